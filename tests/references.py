"""Reference implementations of the original package's loops, the oracles of the engine and pipeline tests."""
import torch
import torch.nn.functional as F

from rudolph.generation.sampling import make_generator, top_k_top_p_filtering


def reference_generate(model, prefix, length, num, bs, vocab, top_k, top_p, temperature, seed,
                       fixed=None, eos_from=None, stop_at_eos=False, prefixes_weights=None, late_softmax=False):
    """The original pipelines' loop: full forward every step, one multinomial per step."""
    g = make_generator(seed)
    fixed = fixed or {}
    branches = prefixes_weights or [(prefix, 1.0)]
    P = len(branches[0][0])
    out = []
    for begin in range(0, num, bs):
        b = min(bs, num - begin)
        gen = torch.zeros(b, 0, dtype=torch.long)
        for t in range(P, length):
            if t in fixed:
                gen = torch.cat((gen, torch.full((b, 1), fixed[t])), 1)
                continue
            mixed = 0
            for pre, w in branches:
                seq = torch.cat((pre.expand(b, -1), gen), 1)
                logits, _ = model(seq, return_loss=False)
                f = top_k_top_p_filtering(logits[:, -1, vocab] / temperature, top_k=top_k, top_p=top_p)
                mixed = mixed + w * (f if late_softmax else torch.softmax(f, -1))
            probs = torch.softmax(mixed, -1) if late_softmax else mixed
            tok = torch.multinomial(probs, 1, generator=g)
            if eos_from is not None:
                tok[tok >= eos_from] = 3
            gen = torch.cat((gen, tok), 1)
            if stop_at_eos and (gen == 3).any(1).all():
                break
        gen = torch.cat((gen, torch.zeros(b, length - P - gen.shape[1], dtype=torch.long)), 1)
        if stop_at_eos:
            for row in gen:
                hits = (row == 3).nonzero()
                if len(hits):
                    row[int(hits[0]) + 1:] = 0
        out.append(torch.cat((branches[0][0].expand(b, -1), gen), 1))
    return torch.cat(out)


def reference_ce(model, ids, start, stop, vocab, ignore_index=-100, mask=None):
    logits, _ = model(ids, attention_mask=mask, return_loss=False)
    return F.cross_entropy(logits[:, start:stop, vocab].transpose(1, 2), ids[:, start + 1:stop + 1],
                           ignore_index=ignore_index, reduction='none')

