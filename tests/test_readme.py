"""The README's Python snippets run as written, on the embedded tiny-shapes model.

Each ```python block is run in a fresh namespace in a temporary folder after two substitutions:
every published model name becomes ``'tiny-shapes'`` and, without CUDA, ``'cuda'`` becomes
``'cpu'``. What a user brings (a picture, a captions file, a fine-tuned folder, token ids) comes
from a small setup drawn with ``rudolph.demo.shapes``; blocks that continue an earlier one find
the components loaded there (``model``, ``tokenizer``, ``vae``, ``device``).
"""
import json
import os
import re
import shutil

import pytest
import torch

from rudolph.demo import shapes
from rudolph.model import MODELS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = 'tiny-shapes'
PUBLISHED = sorted((name for name in MODELS if name != TINY), key=len, reverse=True)
#: names a block may use without defining them: the user's data and the components of "Tasks".
GIVEN = ('model', 'tokenizer', 'vae', 'device', 'pil_img', 'input_ids', 'attention_mask')


def readme_blocks() -> list:
    """``(heading, source)`` of every ```python block of README.md."""
    with open(os.path.join(REPO, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    blocks, heading = [], ''
    for match in re.finditer(r'^(## [^\n]+)$|^```python\n(.*?)^```', text, flags=re.M | re.S):
        if match.group(1):
            heading = match.group(1)[3:].strip()
        else:
            blocks.append((heading, match.group(2)))
    return blocks


def on_tiny(source: str) -> str:
    """The block with every published model name replaced by tiny-shapes (and CUDA by CPU if absent)."""
    for name in PUBLISHED:
        source = source.replace(repr(name), repr(TINY)).replace(f'"{name}"', repr(TINY))
    if not torch.cuda.is_available():
        source = source.replace("'cuda'", "'cpu'")
    return source


BLOCKS = readme_blocks()
@pytest.fixture(scope='module')
def user_files(tmp_path_factory):
    """A working folder with what the snippets expect from a user, and the loaded tiny components."""
    from rudolph.demo import load_bundle

    root = tmp_path_factory.mktemp('readme')
    samples = shapes.make_samples(8, seed=5)
    os.makedirs(root / 'images')
    with open(root / 'captions.jsonl', 'w', encoding='utf-8') as f:
        for i, sample in enumerate(samples):
            sample.image.save(root / 'images' / f'{i}.png')
            f.write(json.dumps({'image': f'{i}.png', 'right_text': shapes.caption(sample)}, ensure_ascii=False) + '\n')
    samples[0].image.save(root / 'img.jpg')
    os.makedirs(root / 'my_finetune')
    shutil.copy(MODELS[TINY]['local_path'], root / 'my_finetune' / 'pytorch_model.bin')
    model, tokenizer, vae, _ = load_bundle(TINY)
    return root, dict(model=model, tokenizer=tokenizer, vae=vae, pil_img=samples[0].image)


def given_names(model, tokenizer, vae, pil_img) -> dict:
    """What a block may use without defining it (fresh tensors for every block)."""
    s = model.total_seq_length if hasattr(model, 'total_seq_length') else None
    if s is None:
        s = model.l_text_seq_length + model.image_tokens_per_dim ** 2 + model.r_text_seq_length
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, min(model.spc_tokens.values()), (2, s), generator=generator)
    input_ids[:, model.l_text_seq_length:s - model.r_text_seq_length] = torch.randint(
        0, model.image_vocab_size, (2, model.image_tokens_per_dim ** 2), generator=generator)  # codes, not offset
    return dict(model=model, tokenizer=tokenizer, vae=vae, device='cpu', pil_img=pil_img, input_ids=input_ids,
                attention_mask=torch.tril(torch.ones(2, 1, s, s)))


def test_readme_has_the_snippets():
    headings = [heading for heading, _ in BLOCKS]
    assert len(BLOCKS) >= 6
    for section in ('Loading a model', 'Tasks', 'Fine-tuning'):
        assert section in headings, section
    for heading, source in BLOCKS:  # after the substitution every block runs on tiny-shapes
        for name in PUBLISHED:
            assert repr(name) not in on_tiny(source), (heading, name)


@pytest.mark.parametrize('index', range(len(BLOCKS)), ids=[f'{i}-{h}' for i, (h, _) in enumerate(BLOCKS)])
def test_readme_snippet_runs(index, user_files, monkeypatch):
    heading, source = BLOCKS[index]
    root, components = user_files
    monkeypatch.chdir(root)
    namespace = {'__name__': '__readme__'}
    code = compile(on_tiny(source), f'README.md[{heading} block {index}]', 'exec')
    used = set(code.co_names)
    namespace.update({k: v for k, v in given_names(**components).items() if k in used and k in GIVEN})
    exec(code, namespace)  # any error fails the test


def test_readme_gives_the_cpu_only_install():
    with open(os.path.join(REPO, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    first = re.search(r'^```bash\n(.*?)^```', text, flags=re.M | re.S).group(1)
    cpu = 'pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu && pip install .'
    assert 'pip install .' in first and cpu in first
