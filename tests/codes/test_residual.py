"""Residual quantisation: stage 1 is the tokenizer's dictionary, and every stage refines the last."""
import pytest
import torch

from fastwave.codes.kmeans import kmeans, nearest_centroid
from fastwave.codes.residual import fit_residual_codebooks, flatten_stages, residual_quantise


def test_each_stage_refines_the_quantisation():
    latents = torch.randn(2000, 8, generator=torch.Generator().manual_seed(0))
    first = kmeans(latents, 16, seed=0).centroids
    codebooks = fit_residual_codebooks(latents, first=first, stages=3, seed=0)
    assert [tuple(book.shape) for book in codebooks] == [(16, 8)] * 3
    errors = []
    for stages in (1, 2, 3):
        codes, quantised = residual_quantise(latents, codebooks[:stages])
        assert codes.shape == (2000, stages) and codes.dtype == torch.int64
        # the quantised vector is the sum of the row's centroids, and stage 1 is the plain dictionary's code
        assert torch.allclose(quantised, sum(codebooks[s][codes[:, s]] for s in range(stages)), atol=1e-5)
        assert torch.equal(codes[:, 0], nearest_centroid(latents, first)[0])
        errors.append(float((latents - quantised).pow(2).sum(1).mean()))
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 0.6 * errors[0]  # two more 16-code stages: 4,096 cells' worth of detail
    assert len(fit_residual_codebooks(latents, first=first, stages=2, codes=4)[1]) == 4
    again = fit_residual_codebooks(latents, first=first, stages=3, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(codebooks, again))  # seeded


def test_bad_input_is_refused():
    latents = torch.randn(50, 4)
    with pytest.raises(ValueError, match="first must be"):
        fit_residual_codebooks(latents, first=torch.zeros(8, 3), stages=2)
    with pytest.raises(ValueError, match="stages"):
        fit_residual_codebooks(latents, first=torch.zeros(8, 4), stages=0)
    with pytest.raises(ValueError, match="latents must be"):
        residual_quantise(torch.zeros(0, 4), [torch.zeros(8, 4)])
    with pytest.raises(ValueError, match="NaN"):
        residual_quantise(torch.full((3, 4), float("nan")), [torch.zeros(8, 4)])
    with pytest.raises(ValueError, match="codebooks must be"):
        residual_quantise(latents, [torch.zeros(8, 3)])


def test_flattened_stages_keep_each_code_and_its_stage():
    codes = torch.tensor([[3, 0, 7], [1, 5, 2]])
    tokens = flatten_stages(codes, codes_per_stage=8)
    assert tokens.tolist() == [3, 8, 23, 1, 13, 18]  # patch by patch, stage s shifted by 8 s
    assert torch.equal(tokens.reshape(2, 3) % 8, codes) and torch.equal(tokens.reshape(2, 3) // 8, torch.arange(3).expand(2, 3))
    assert flatten_stages(torch.zeros(0, 2, dtype=torch.int64), 4).shape == (0,)
    for bad, match in ((torch.tensor([[8, 0]]), r"in \[0, 8\)"), (torch.tensor([[-1, 0]]), r"in \[0, 8\)"),
                       (torch.tensor([1, 2]), "must be"), (torch.zeros(2, 2), "must be")):
        with pytest.raises(ValueError, match=match):
            flatten_stages(bad, 8)
    with pytest.raises(ValueError, match="codes_per_stage"):
        flatten_stages(codes, 1)
