"""top-k / top-p filtering and seeded sampling."""
import pytest
import torch

from rudolph.generation.sampling import Sampler, make_generator, top_k_top_p_filtering


def sample(logits, generator=None, **kwargs):
    """One id per row of one branch's logits, as the engine samples."""
    return Sampler(generator=generator, **kwargs)([logits])


def reference_filter(logits, top_k, top_p):
    """Row by row, in plain Python: keep the top-k, then the smallest top set whose mass reaches top_p."""
    out = torch.full_like(logits, -float('inf'))
    for r, row in enumerate(logits):
        order = sorted(range(len(row)), key=lambda i: -row[i].item())
        keep = order[:top_k] if top_k else order
        kth = row[keep[-1]].item()
        keep = [i for i in order if row[i].item() >= kth]  # ties with the k-th survive, as in transformers
        probs = torch.softmax(row[keep], 0)
        kept, mass = [], 0.0
        for i, p in zip(keep, probs.tolist()):
            kept.append(i)
            mass += p
            if mass > top_p:
                break
        out[r, kept] = row[kept]
    return out


@pytest.mark.parametrize('top_k,top_p', [(0, 1.0), (5, 1.0), (0, 0.5), (7, 0.9), (3, 0.3), (50, 0.99)])
def test_filter_matches_reference(top_k, top_p):
    torch.manual_seed(1)
    logits = torch.randn(4, 40) * 2
    before = logits.clone()
    got = top_k_top_p_filtering(logits, top_k=top_k, top_p=top_p)
    assert torch.equal(logits, before), 'the input must not be modified'
    assert torch.equal(got, reference_filter(logits, top_k, top_p))


def test_filter_keeps_at_least_one_token():
    logits = torch.tensor([[5.0, 1.0, 0.0, -1.0]])
    got = top_k_top_p_filtering(logits, top_k=0, top_p=1e-6)
    assert torch.isfinite(got).sum() == 1 and torch.isfinite(got[0, 0])


@pytest.mark.parametrize('kwargs', [dict(top_p=0.0), dict(top_p=1.5), dict(top_k=-1), dict(top_k=2.5),
                                    dict(temperature=0.0), dict(temperature=-1.0)])
def test_bad_sampling_args(kwargs):
    args = dict(top_k=5, top_p=0.9, temperature=1.0, **{})
    args.update(kwargs)
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        sample(torch.randn(2, 10), generator=make_generator(0), **args)


def test_sample_is_seeded_and_ignores_global_rng():
    logits = torch.randn(8, 100)
    torch.manual_seed(123)
    a = sample(logits, top_k=20, top_p=0.9, generator=make_generator(7))
    torch.manual_seed(999)
    torch.rand(10)
    b = sample(logits, top_k=20, top_p=0.9, generator=make_generator(7))
    c = sample(logits, top_k=20, top_p=0.9, generator=make_generator(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_top_k_one_is_greedy_and_samples_stay_in_the_filtered_set():
    logits = torch.randn(16, 50)
    assert torch.equal(sample(logits, top_k=1, generator=make_generator(0)), logits.argmax(-1))
    g = make_generator(3)
    allowed = torch.isfinite(top_k_top_p_filtering(logits, top_k=4, top_p=0.7))
    for _ in range(20):
        ids = sample(logits, top_k=4, top_p=0.7, generator=g)
        assert allowed[torch.arange(16), ids].all()


def test_temperature_sharpens():
    logits = torch.tensor([[2.0, 1.0, 0.0]]).expand(4000, -1)
    cold = sample(logits, temperature=0.1, generator=make_generator(0))
    hot = sample(logits, temperature=10.0, generator=make_generator(0))
    assert (cold == 0).float().mean() > 0.99
    assert (hot == 0).float().mean() < 0.5


def transformers_410_filtering(logits, top_k=0, top_p=1.0, filter_value=-float('Inf'), min_tokens_to_keep=1):
    """Hand-written copy of transformers 4.10 ``top_k_top_p_filtering`` (TopK then TopP warper, in place)."""
    if top_k > 0:
        top_k = min(max(top_k, min_tokens_to_keep), logits.size(-1))
        indices_to_remove = logits < torch.topk(logits, top_k)[0][..., -1, None]
        logits = logits.masked_fill(indices_to_remove, filter_value)
    if 0 <= top_p <= 1.0:
        sorted_logits, sorted_indices = torch.sort(logits, descending=True)
        cumulative_probs = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        sorted_indices_to_remove = cumulative_probs > top_p
        if min_tokens_to_keep > 1:
            sorted_indices_to_remove[..., :min_tokens_to_keep - 1] = 0
        sorted_indices_to_remove[..., 1:] = sorted_indices_to_remove[..., :-1].clone()
        sorted_indices_to_remove[..., 0] = 0
        indices_to_remove = sorted_indices_to_remove.scatter(1, sorted_indices, sorted_indices_to_remove)
        logits = logits.masked_fill(indices_to_remove, filter_value)
    return logits


@pytest.mark.parametrize('min_keep', [1, 2, 3, 5])
@pytest.mark.parametrize('top_k,top_p', [(0, 1e-6), (0, 0.3), (4, 1e-6), (2, 0.5), (0, 0.9)])
def test_min_tokens_to_keep_matches_transformers_410(top_k, top_p, min_keep):
    torch.manual_seed(3)
    logits = torch.randn(3, 30) * 3
    got = top_k_top_p_filtering(logits, top_k=top_k, top_p=top_p, min_tokens_to_keep=min_keep)
    assert torch.equal(got, transformers_410_filtering(logits.clone(), top_k, top_p, min_tokens_to_keep=min_keep))


def test_min_tokens_to_keep_keeps_exactly_k_for_a_tiny_nucleus():
    logits = torch.tensor([[9.0, 3.0, 2.0, 1.0, 0.0, -1.0]])
    got = top_k_top_p_filtering(logits, top_p=1e-6, min_tokens_to_keep=3)
    assert torch.isfinite(got).sum() == 3 and torch.isfinite(got[0, :3]).all()
    with pytest.raises(ValueError, match='min_tokens_to_keep'):
        top_k_top_p_filtering(logits, min_tokens_to_keep=0)


def test_top_p_one_keeps_every_id_unlike_the_rounding_tail_of_transformers():
    # Documented difference (README): transformers 4.10 also ran the nucleus step at top_p=1.0
    # and dropped ids after the float cumsum passed 1.0; here top_p=1.0 disables it.
    torch.manual_seed(0)
    logits = torch.randn(4, 16384) * 2
    assert torch.equal(top_k_top_p_filtering(logits, top_p=1.0), logits)
    assert not torch.isfinite(transformers_410_filtering(logits.clone(), 0, 1.0)).all()


def test_sampler_maps_allowed_ids_and_eos():
    logits = torch.full((3, 12), -5.0)
    logits[:, 11] = 9.0  # not allowed: never drawn
    logits[0, 5], logits[1, 7], logits[2, 9] = 4.0, 4.0, 4.0
    sampler = Sampler(top_k=1, allowed=torch.tensor([5, 7, 9]), eos_from=8, eos_id=3, generator=make_generator(0))
    assert sampler([logits]).tolist() == [5, 7, 3]  # 9 >= eos_from becomes eos


def test_sampler_mixes_guidance_branches():
    a, b = torch.randn(2, 6, generator=make_generator(1)), torch.randn(2, 6, generator=make_generator(2))
    early = Sampler(weights=[1.5, -0.5]).probs([a, b])
    torch.testing.assert_close(early, 1.5 * a.softmax(-1) - 0.5 * b.softmax(-1))
    late = Sampler(temperature=2.0, weights=[1.5, -0.5], late_softmax=True).probs([a, b])
    torch.testing.assert_close(late, (1.5 * a / 2.0 - 0.5 * b / 2.0).softmax(-1))
    with pytest.raises(ValueError, match='weights'):
        Sampler(weights=[1.0, 1.0]).probs([a])
