"""What a tuned inference library (ONNX Runtime, CPU) reaches on the 350M model's linear layers.

A reference beside our own kernels (``bench/int8_kernels.py``, ``bench/precision.py``): each
transformer layer's four linear layers of the 350M model (hidden 1024, 24 layers), shapes
(out, in) = (3072, 1024) qkv, (1024, 1024) attention out, (4096, 1024) MLP in, (1024, 4096) MLP
out, each ``y = x @ W^T + b`` on its own input ``x`` of shape [rows, in] (rows dynamic), random
weights normal(0, 0.02) from a seeded numpy generator. The graph is built with ``onnx.helper``
(no torch) and timed, per variant, as one ``InferenceSession.run`` over all four matmuls:

- ``fp32``: plain MatMul + Add;
- ``int8 s8`` / ``int8 u8`` / ``int8 s8 reduce``: ``onnxruntime.quantization.quantize_dynamic``
  with ``per_channel=True`` and ``weight_type`` QInt8 / QUInt8 / QInt8 with ``reduce_range=True``
  (int8 weights, activations quantised per call to uint8);
- ``fp16``: the whole graph (weights and activations) in float16. Where ORT's CPU provider has
  no fp16 kernel it either refuses the session (the script says so and goes on) or inserts Casts
  and computes in fp32 with weights upcast at load (the script says so under the table).

Per rows in the call (1, 8, 32): warm-up calls, then the median of ``--repeat`` calls of one run over
the four linears of ``--layers`` distinct layers (default 24: the linears pass of one 350M decode step,
every weight read from memory once per run; ``--layers 1`` times one layer over and over, whose int8
weights (12.6 MB) then sit in the L3 cache). The error column is, over the four
outputs, the largest ``max|y - ref| / max|ref|`` against an fp32 numpy reference. After the
table, the ops each variant's graph holds after ORT's optimisations (e.g. whether dynamic
quantisation ended up as ``MatMulIntegerToFloat`` / ``DynamicQuantizeMatMul``).

The script refuses to time on a busy machine (1-minute load average above ``--max-load``) unless
``--busy``, which marks the table.

Needs (NOT project dependencies; a separate venv keeps the project's untouched)::

    python3.11 -m venv /work/ortvenv && /work/ortvenv/bin/pip install onnxruntime onnx numpy

(in any environment: ``pip install onnxruntime onnx``).

Usage: python bench/reference_onnxruntime.py [--threads 2] [--repeat 50] [--rows 1 8 32] [--busy]
"""
import argparse
import collections
import datetime
import logging
import os
import statistics
import sys
import tempfile
import time

import numpy as np

try:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic
except ImportError as exc:  # not project dependencies
    sys.exit(f'reference_onnxruntime.py needs ONNX Runtime and onnx ({exc}): pip install onnxruntime onnx')

#: one 350M layer's linear layers, (out, in) (``rudolph/model/configs.py``: hidden 1024, 24 layers)
SHAPES = [(3072, 1024), (1024, 1024), (4096, 1024), (1024, 4096)]
LAYERS = 24
OPSET = 17
#: quantize_dynamic settings per int8 variant
QUANT = {
    'int8 s8': dict(per_channel=True, weight_type=QuantType.QInt8),
    'int8 u8': dict(per_channel=True, weight_type=QuantType.QUInt8),
    'int8 s8 reduce': dict(per_channel=True, weight_type=QuantType.QInt8, reduce_range=True),
}


def make_weights(seed: int, layers: int) -> list:
    """Per linear layer of ``layers`` transformer layers: fp32 weight (out, in) ~ normal(0, 0.02), bias ~ normal(0, 0.01)."""
    rng = np.random.default_rng(seed)
    return [(rng.normal(0, 0.02, (o, i)).astype(np.float32), rng.normal(0, 0.01, o).astype(np.float32))
            for _ in range(layers) for o, i in SHAPES]


def build_model(weights: list, dtype=np.float32) -> 'onnx.ModelProto':
    """The four linears as one graph: input ``x{k}`` [rows, in] -> MatMul(W^T) -> Add(b) -> ``y{k}``."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    nodes, inits, inputs, outputs = [], [], [], []
    for k, (w, b) in enumerate(weights):
        out_f, in_f = w.shape
        inits += [numpy_helper.from_array(np.ascontiguousarray(w.T).astype(dtype), f'w{k}'),
                  numpy_helper.from_array(b.astype(dtype), f'b{k}')]
        nodes += [helper.make_node('MatMul', [f'x{k}', f'w{k}'], [f'm{k}'], name=f'matmul{k}'),
                  helper.make_node('Add', [f'm{k}', f'b{k}'], [f'y{k}'], name=f'add{k}')]
        inputs.append(helper.make_tensor_value_info(f'x{k}', elem, ['rows', in_f]))
        outputs.append(helper.make_tensor_value_info(f'y{k}', elem, ['rows', out_f]))
    graph = helper.make_graph(nodes, 'linears_350m_layer', inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', OPSET)])
    model.ir_version = 8  # old enough for any recent onnxruntime
    onnx.checker.check_model(model)
    return model


def make_variants(weights: list, tmp: str) -> dict:
    """Write every variant's .onnx under ``tmp``: name -> path, or name -> error text when it failed."""
    fp32 = os.path.join(tmp, 'fp32.onnx')
    onnx.save(build_model(weights), fp32)
    paths = {'fp32': fp32}
    for name, settings in QUANT.items():
        path = os.path.join(tmp, name.replace(' ', '_') + '.onnx')
        try:
            quiet_quantize(fp32, path, settings)
            paths[name] = path
        except Exception as exc:  # report and go on with the other variants
            paths[name] = f'quantize_dynamic failed: {type(exc).__name__}: {exc}'
    paths['fp16'] = os.path.join(tmp, 'fp16.onnx')
    onnx.save(build_model(weights, np.float16), paths['fp16'])
    return paths


def quiet_quantize(src: str, dst: str, settings: dict) -> None:
    """``quantize_dynamic(src, dst, **settings)`` without its root-logger advice on pre-processing."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(src, dst, **settings)
    finally:
        root.setLevel(level)


def session_options(threads: int, optimized_path: str = '') -> 'ort.SessionOptions':
    """CPU session options: ``threads`` intra-op, 1 inter-op, every graph optimisation."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only
    if optimized_path:
        so.optimized_model_filepath = optimized_path
    return so


def open_session(path: str, threads: int, optimized_path: str = '') -> 'ort.InferenceSession':
    """An ``InferenceSession`` on the CPU execution provider."""
    return ort.InferenceSession(path, session_options(threads, optimized_path), providers=['CPUExecutionProvider'])


def graph_ops(path: str) -> str:
    """The op types (with their counts) and weight dtypes of the graph saved at ``path``."""
    graph = onnx.load(path).graph
    counts = collections.Counter((f'{n.domain}.' if n.domain else '') + n.op_type for n in graph.node)
    dtypes = collections.Counter(helper.tensor_dtype_to_np_dtype(t.data_type).name for t in graph.initializer)
    return (', '.join(f'{op} x{c}' for op, c in sorted(counts.items()))
            + '; initializers ' + ', '.join(f'{d} x{c}' for d, c in sorted(dtypes.items())))


def optimized_ops(path: str, threads: int, tmp: str) -> str:
    """``graph_ops`` of ``path`` as written and after ORT's optimisations (ORT_ENABLE_ALL)."""
    out = os.path.join(tmp, 'optimized_' + os.path.basename(path))
    open_session(path, threads, out)
    text = f'as written: {graph_ops(path)}\n  after ORT: {graph_ops(out)}'
    if path.endswith('fp16.onnx') and not fp16_kept(out):
        text += ('\n  NOTE: ORT CPU has no fp16 MatMul/Gemm kernel here: it inserted Casts and upcast the '
                 'weights to fp32 at load, so the fp16 row is fp32 compute with fp16 inputs/outputs.')
    return text


def fp16_kept(path: str) -> bool:
    """Whether the optimised graph at ``path`` still holds float16 weights."""
    return any(t.data_type == TensorProto.FLOAT16 for t in onnx.load(path).graph.initializer)


def make_inputs(rows: int, seed: int, layers: int) -> dict:
    """fp32 inputs ``x{k}`` of shape [rows, in] ~ normal(0, 1), one per linear layer."""
    rng = np.random.default_rng(seed + rows)
    return {f'x{k}': rng.standard_normal((rows, i)).astype(np.float32)
            for k, (_, i) in enumerate(SHAPES * layers)}


def reference(weights: list, feeds: dict) -> list:
    """fp32 numpy ``x @ W^T + b`` per linear layer."""
    return [feeds[f'x{k}'] @ w.T + b for k, (w, b) in enumerate(weights)]


def max_rel_err(outputs: list, refs: list) -> float:
    """Over the outputs, the largest ``max|y - ref| / max|ref|``."""
    return max(float(np.abs(y.astype(np.float32) - r).max() / np.abs(r).max()) for y, r in zip(outputs, refs))


def median_ms(sess: 'ort.InferenceSession', feeds: dict, warmup: int, repeat: int) -> float:
    """Median wall time in ms of one ``sess.run`` over ``feeds``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        sess.run(None, feeds)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def time_variant(sess, dtype, weights: list, args) -> list:
    """Table rows ``(rows, ms, rel err)`` of one variant's session at every ``--rows``."""
    result = []
    for rows in args.rows:
        feeds32 = make_inputs(rows, args.seed, args.layers)
        feeds = {k: v.astype(dtype) for k, v in feeds32.items()}
        err = max_rel_err(sess.run(None, feeds), reference(weights, feeds32))
        result.append((rows, median_ms(sess, feeds, args.warmup, args.repeat), err))
    return result


def check_load(args) -> float:
    """The 1-minute load average; exit when above ``--max-load`` unless ``--busy``."""
    load = os.getloadavg()[0]
    if load > args.max_load and not args.busy:
        sys.exit(f'1-minute load average {load:.2f} > --max-load {args.max_load}: the machine is busy and '
                 'timings would mean little. Wait for a quiet machine, or pass --busy to time anyway.')
    return load


def print_header(args, load: float) -> None:
    """Command line, date (UTC), load averages and library versions."""
    print('command:', ' '.join([os.path.basename(sys.executable)] + sys.argv))
    print('date (UTC):', datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S'))
    print('os.getloadavg():', tuple(round(v, 2) for v in os.getloadavg()))
    print(f'onnxruntime {ort.__version__}, onnx {onnx.__version__}, numpy {np.__version__}, '
          f'providers {ort.get_available_providers()}, {args.threads} intra-op threads')
    if load > args.max_load:
        print(f'NOT IDLE: load average {load:.2f} > {args.max_load} (--busy); the numbers below are noisy.')


def print_table(results: dict, args, idle: bool) -> None:
    """Markdown table: rows x variant, ms for one layer's linears, x LAYERS, max relative error."""
    title = '' if idle else ' (NOT IDLE: --busy on a loaded machine)'
    print(f'\n### ONNX Runtime CPU, the 4 linears of {args.layers} distinct 350M layers{title}, '
          f'median of {args.repeat}\n')
    print(f'| rows | variant | ms ({args.layers} layers) | per {LAYERS}-layer step (ms) | max rel err vs fp32 numpy |')
    print('|---|---|---|---|---|')
    for rows in args.rows:
        for name, table in results.items():
            for r, ms, err in table:
                if r == rows:
                    print(f'| {rows} | {name} | {ms:.3f} | {ms * LAYERS / args.layers:.1f} | {err:.2e} |')


def run_all(args, tmp: str) -> tuple:
    """Build, open and time every variant; print what failed and each graph's optimised ops."""
    weights = make_weights(args.seed, args.layers)
    results, ops = {}, {}
    for name, path in make_variants(weights, tmp).items():
        if not path.endswith('.onnx'):
            print(f'{name}: skipped, {path}')
            continue
        dtype = np.float16 if name == 'fp16' else np.float32
        try:
            sess = open_session(path, args.threads)
            results[name] = time_variant(sess, dtype, weights, args)
            ops[name] = optimized_ops(path, args.threads, tmp)
        except Exception as exc:  # e.g. no fp16 MatMul kernel on this CPU provider
            print(f'{name}: ORT CPU does not run it here ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})')
    return results, ops


def main() -> None:
    """Parse arguments, check the load, time every variant and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, default=2, help='intra-op threads (default 2)')
    parser.add_argument('--repeat', type=int, default=50, help='timed calls per rows and variant (default 50)')
    parser.add_argument('--warmup', type=int, default=5, help='untimed calls first (default 5)')
    parser.add_argument('--rows', type=int, nargs='+', default=[1, 8, 32], help='rows per call (default 1 8 32)')
    parser.add_argument('--seed', type=int, default=0, help='numpy seed of weights and inputs')
    parser.add_argument('--layers', type=int, default=LAYERS,
                        help=f'distinct layers in the graph (default {LAYERS}: every weight read from memory once '
                             'per run, as in a decode step; 1 times one layer over and over, cache-resident)')
    parser.add_argument('--max-load', type=float, default=1.0, help='refuse above this 1-minute load (default 1.0)')
    parser.add_argument('--busy', action='store_true', help='time anyway on a busy machine (the table says so)')
    args = parser.parse_args()
    load = check_load(args)
    print_header(args, load)
    with tempfile.TemporaryDirectory(prefix='ort_ref_') as tmp:
        results, ops = run_all(args, tmp)
    print_table(results, args, idle=load <= args.max_load)
    print('\nops after ORT graph optimisation (ORT_ENABLE_ALL):')
    for name, text in ops.items():
        print(f'- {name}: {text}')


if __name__ == '__main__':
    main()
