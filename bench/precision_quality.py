"""Reduced-precision quality against fp32 (issue 13): agreement, logit error, ranking order.

Parts (``--parts``; default ``tiny``):

- ``tiny``: tiny-shapes' real weights. Teacher-forced next-token agreement over full natural
  sequences (caption | image codes drawn by the fp32 model | caption): argmax agreement with
  fp32 at every scored position (text positions over the text vocabulary, image positions over
  the image codes) and the max relative logit error ``max|logits - fp32| / max|fp32|``; then
  zero-shot (colour and shape classes) and reranking-by-text orders: over every pair of
  candidates whose fp32 perplexities differ by more than 1%, the share in the same order.
- ``350M``: the same agreement numbers on the 350M config with random weights (the tests'
  scheme: normal(0, 0.02) weights, zero biases) over random full sequences, and the rerank /
  zero-shot pair orders through ``rudolph.pipelines`` (random weights give nearly flat logits,
  so the argmax agreement there is a stress test, not a picture of real use).

The 200-picture task accuracies are ``rudolph demo --eval --dtype bf16`` / ``--quantize int8`` (and the
other formats).

Usage: python bench/precision_quality.py [--parts tiny,350M] [--threads 2] [--n 16]
"""
import argparse
import itertools
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from precision import CLASSES, NAMES, same_weight_models, task_inputs  # noqa: E402

from rudolph.model import get_rudolph_model  # noqa: E402

PRECISIONS = {'fp32': dict(dtype='fp32'), 'bf16': dict(dtype='bf16'), 'int8': dict(quantize='int8'),
              'int8-dynamic': dict(quantize='int8-dynamic'), 'fp16': dict(quantize='fp16')}
assert tuple(PRECISIONS) == NAMES  # the formats of bench/precision.py, in its order


@torch.no_grad()
def agreement(models: dict, ids: torch.Tensor) -> dict:
    """Per precision: (argmax agreement with fp32, max relative logit error) over every scored position."""
    lay = models['fp32'].config
    L, N2 = lay.L, lay.N2
    ref = models['fp32'](ids)[0][:, :-1].float()
    image_pos = torch.zeros(ref.shape[1], dtype=torch.bool)
    image_pos[L - 1:L + N2 - 1] = True  # the logits that predict an image code

    def argmax(logits):
        text = logits[..., lay.text_sample_slice].argmax(-1)
        image = logits[..., lay.image_slice].argmax(-1)
        return torch.where(image_pos, image, text)

    out = {}
    for name in NAMES[1:]:
        got = models[name](ids)[0][:, :-1].float()
        out[name] = ((argmax(got) == argmax(ref)).float().mean().item(),
                     ((got - ref).abs().max() / ref.abs().max()).item())
    return out


def pair_order(ref: torch.Tensor, got: torch.Tensor, margin: float = 0.01):
    """``(pairs in the same order, pairs)`` over the candidates whose ``ref`` values differ by > ``margin``."""
    same = total = 0
    for i, j in itertools.combinations(range(len(ref)), 2):
        lo, hi = sorted((float(ref[i]), float(ref[j])))
        if hi > lo * (1 + margin):
            total += 1
            same += (float(ref[i]) < float(ref[j])) == (float(got[i]) < float(got[j]))
    return same, total


def print_agreement(title: str, result: dict, positions: int) -> None:
    print(f'\n## {title}: teacher-forced agreement with fp32 ({positions} positions)\n')
    print('| precision | argmax agreement | max relative logit error |')
    print('|---|---|---|')
    for name, (agree, err) in result.items():
        print(f'| {name} | {agree * 100:.2f}% | {err:.4f} |')


def print_orders(title: str, orders: dict) -> None:
    print(f'\n## {title}: same order as fp32 where fp32 perplexities differ by > 1%\n')
    print('| precision | task | pairs in fp32 order | pairs |')
    print('|---|---|---|---|')
    for (name, task), (same, total) in orders.items():
        print(f'| {name} | {task} | {same} ({100 * same / max(total, 1):.1f}%) | {total} |')


def tiny_sequences(api, n: int) -> torch.Tensor:
    """``n`` natural full sequences: caption | fp32-drawn image codes | caption (task tokens of t2i/i2t)."""
    from rudolph.demo import T2I_SAMPLING
    from rudolph.demo import shapes as S

    lay = api.model.config
    rows = []
    for i, sample in enumerate(S.make_samples(n, seed=2024)):
        text = S.caption(sample)
        codes = api.generate_codebooks(text, images_num=1, seed=i, **T2I_SAMPLING)[0]
        left = api.encode_text(text, lay.L, '<LT_T2I>')
        right = api.encode_text(text, lay.R, '<RT_I2T>')
        rows.append(torch.cat([left, codes.cpu(), right]))
    return torch.stack(rows)


def part_tiny(args) -> None:
    from rudolph.api import ruDolphApi
    from rudolph.demo import shapes as S
    from rudolph.tasks import core as tasks
    from rudolph.tokenizer import get_tokenizer
    from rudolph.vae import get_vae

    tokenizer, vae = get_tokenizer('tiny-shapes'), get_vae(name='tiny-shapes')
    apis = {n: ruDolphApi(get_rudolph_model('tiny-shapes', **kw), tokenizer, vae, quite=True)
            for n, kw in PRECISIONS.items()}
    ids = tiny_sequences(apis['fp32'], args.n)
    print_agreement(f'tiny-shapes real weights, {args.n} natural sequences',
                    agreement({n: a.model for n, a in apis.items()}, ids), ids.shape[0] * (ids.shape[1] - 1))
    orders = {}
    samples = S.make_samples(args.n, seed=4048)
    for template, classes, task in ((S.ZS_COLOUR_TEMPLATE, S.colour_classes(), 'zero-shot colour'),
                                    (S.ZS_SHAPE_TEMPLATE, S.shape_classes(), 'zero-shot shape')):
        ppl = {n: [tasks.zero_shot(a.parts, s.image, classes, template, len(classes))['ppl'] for s in samples]
               for n, a in apis.items()}
        for name in NAMES[1:]:
            counts = [pair_order(r, g) for r, g in zip(ppl['fp32'], ppl[name])]
            orders[name, task] = (sum(c[0] for c in counts), sum(c[1] for c in counts))
    for name in NAMES[1:]:
        orders[name, 'rerank by text, 8 codebooks'] = (0, 0)
    for i, sample in enumerate(samples[:max(2, args.n // 4)]):
        text = S.caption(sample)
        codes = apis['fp32'].generate_codebooks(text, images_num=8, seed=i, bs=8)
        ref = apis['fp32'].self_reranking_by_text(text, codes, bs=8)[1]
        for name in NAMES[1:]:
            same, total = pair_order(torch.as_tensor(ref), torch.as_tensor(apis[name].self_reranking_by_text(
                text, codes, bs=8)[1]))
            old = orders[name, 'rerank by text, 8 codebooks']
            orders[name, 'rerank by text, 8 codebooks'] = (old[0] + same, old[1] + total)
    print_orders('tiny-shapes real weights', orders)


def part_350m(args) -> None:
    from rudolph import pipelines
    from rudolph.tasks import core as tasks

    models = same_weight_models('350M')
    lay = models['fp32'].config
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, lay.V - lay.L, (2, lay.S), generator=g)
    ids[:, lay.L:lay.L + lay.N2] = torch.randint(0, lay.image_vocab, (2, lay.N2), generator=g)
    print_agreement('350M random weights, 2 random full sequences', agreement(models, ids),
                    ids.shape[0] * (ids.shape[1] - 1))
    ns = argparse.Namespace(model='350M', tmp=args.tmp)
    tokenizer, vae, image = task_inputs(ns, models['fp32'])
    codebooks = torch.randint(0, lay.image_vocab, (8, lay.N2), generator=g)
    rerank = {n: pipelines.self_reranking_by_text('рисунок кота', codebooks, tokenizer, m, bs=8, progress=False)
              for n, m in models.items()}
    zs = {n: tasks.zero_shot(pipelines._parts(m, tokenizer, vae), image, CLASSES, 'на картинке {}', 10)['ppl']
          for n, m in models.items()}
    orders = {}
    for name in NAMES[1:]:
        orders[name, 'rerank by text, 8 codebooks'] = pair_order(torch.as_tensor(rerank['fp32'][0]),
                                                                 torch.as_tensor(rerank[name][0]))
        orders[name, 'zero-shot, 10 classes'] = pair_order(zs['fp32'], zs[name])
    print_orders('350M random weights', orders)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--parts', default='tiny')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--n', type=int, default=16, help='tiny-shapes sequences and pictures')
    parser.add_argument('--tmp', default='/tmp/rudolph-bench')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    parts = args.parts.split(',')
    if 'tiny' in parts:
        part_tiny(args)
    if '350M' in parts:
        part_350m(args)


if __name__ == '__main__':
    main()
