"""Encode throughput of rudolph.tokenizer vs youtokentome 1.0.6 on a ~16k-vocab model.

Trains a YTTM model on faker (ru_RU + some en_US) text, then times single-string calls
(``encode([s])`` per caption, as ``encode_text`` does) and batched calls (``encode(list)``), on
the text seen in training ("warm": our word cache is filled) and on fresh text ("cold" start: a
new tokenizer whose cache is empty). Times are CPU time of the process (best of 5), youtokentome
runs with ``n_threads=1``. If youtokentome is not installed, only ours is printed (on a smaller
model from our trainer).

    python bench/tokenizer_speed.py [--lines 20000] [--vocab 16000]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
# the corpus generator is shared with the tokenizer tests
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests'))

from corpus import faker_lines, rudalle_encode_text  # noqa: E402

from rudolph.tokenizer import BPE, YTTMTokenizerWrapper, train_bpe  # noqa: E402


def best_time(fn, repeat: int = 5, make=None) -> float:
    """Best of ``repeat`` runs of ``fn()``, in CPU time of this process (all its threads), which
    is far less noisy than wall-clock time on a shared machine. With ``make``, each run gets a
    freshly built tokenizer, ``fn(make())``, and only ``fn`` is timed."""
    best = float('inf')
    for _ in range(repeat):
        args = () if make is None else (make(),)
        t = time.process_time()
        fn(*args)
        best = min(best, time.process_time() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--lines', type=int, default=20000, help='training lines (and timed lines)')
    parser.add_argument('--vocab', type=int, default=16000)
    args = parser.parse_args()
    try:
        import youtokentome as yttm
    except ImportError:
        yttm = None

    train = faker_lines(args.lines, seed=0)
    fresh = faker_lines(args.lines, seed=12345)
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, 'bpe.model')
        if yttm is not None:
            data = os.path.join(tmp, 'train.txt')
            with open(data, 'w', encoding='utf-8') as f:
                f.write('\n'.join(train))
            stderr = os.dup(2)  # YTTM's trainer logs to C++ stderr
            with open(os.devnull, 'w') as devnull:
                os.dup2(devnull.fileno(), 2)
                try:
                    yttm.BPE.train(data=data, model=model, vocab_size=args.vocab, n_threads=1)
                finally:
                    os.dup2(stderr, 2)
                    os.close(stderr)
            # youtokentome on one thread: CPU time is compared, so its extra threads would only add noise
            engines = {'youtokentome 1.0.6': lambda: yttm.BPE(model, n_threads=1),
                       'rudolph.tokenizer': lambda: BPE(model)}
        else:
            train_bpe(train[:2000], vocab_size=min(args.vocab, 3000), path=model)
            engines = {'rudolph.tokenizer': lambda: BPE(model)}
        vocab = BPE(model).vocab_size()

        rows = []
        for name, make in engines.items():
            bpe = make()
            bpe.encode(train)  # warm-up (fills our word cache)
            warm_single = best_time(lambda: [bpe.encode([s]) for s in train])
            warm_batch = best_time(lambda: bpe.encode(train))
            rows.append((name, 'warm', len(train) / warm_single, len(train) / warm_batch))
            cold_single = best_time(lambda b: [b.encode([s]) for s in fresh], make=make)
            cold_batch = best_time(lambda b: b.encode(fresh), make=make)
            rows.append((name, 'cold', len(fresh) / cold_single, len(fresh) / cold_batch))
            if name.startswith('rudolph'):
                encode_text = YTTMTokenizerWrapper(make()).encode_text
            else:
                ref = make()
                encode_text = lambda text, length: rudalle_encode_text(ref, yttm, text, length)  # noqa: E731
            enc_s = best_time(lambda: [encode_text(s, 128) for s in train[:5000]])
            rows.append((name, 'encode_text', 5000 / enc_s, float('nan')))

    print(f'model: vocab {vocab}, {len(train)} lines (~{sum(map(len, train)) // len(train)} chars each)')
    print(f'{"engine":<20} {"text":<12} {"single strings/s":>17} {"batched strings/s":>18}')
    for name, label, single, batched in rows:
        b = '-' if batched != batched else f'{batched:,.0f}'
        print(f'{name:<20} {label:<12} {single:>17,.0f} {b:>18}')


if __name__ == '__main__':
    main()
