"""The Python snippets of the README and of the docs pages run as written, on the embedded tiny-shapes model.

Each ```python block of README.md and of ``docs/*.md`` (except ``docs/SPEC.md``, the numeric
contract, which has no runnable snippets) is run in a fresh namespace in a temporary folder after
two substitutions: every published model name becomes ``'tiny-shapes'`` and, without CUDA,
``'cuda'`` becomes ``'cpu'``. What a user brings (a picture, a captions file, a fine-tuned folder,
token ids) comes from a small setup drawn with ``rudolph.demo.shapes``; blocks that continue an
earlier one find the components loaded there (``model``, ``tokenizer``, ``vae``, ``device``).

A block that cannot run here is fenced ```py instead (not collected as ```python) and must be on
:data:`NOT_RUN` with the reason and the test that runs it instead. Shell blocks (```bash: hub
pushes, ``accelerate launch`` on several GPUs or machines, ``rudolph app``) are not run here.
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


DOCS = os.path.join(REPO, 'docs')


def docs_pages() -> list:
    """Every docs page but the specification, in the order of the site's navigation (mkdocs.yml).

    The blocks share the loaded components, and a page may change them as a reader would (fine-tuning
    trains ``model``), so they run in reading order: the README, then the pages as the site lists them.
    """
    pages = [name for name in os.listdir(DOCS) if name.endswith('.md') and name != 'SPEC.md']
    with open(os.path.join(REPO, 'mkdocs.yml'), encoding='utf-8') as f:
        nav = re.findall(r'^\s*- (?:[^:\n]+: )?([\w./-]+\.md)\s*$', f.read(), flags=re.M)
    ordered = [name for name in nav if name in pages]
    return [f'docs/{name}' for name in ordered + sorted(set(pages) - set(ordered))]


#: the pages whose ```python blocks run: the README and every docs page but the specification.
PAGES = ['README.md'] + docs_pages()
#: (page, heading) of the ```py blocks, which are not run here, and why.
NOT_RUN = {
    ('docs/superres.md', 'Super-resolution'):
        "needs ruDALL-E's Real-ESRGAN weights: tests/test_superres.py::test_readme_snippet runs it "
        'against a hub cache it fills with small weights of that layout',
}


def page_blocks(page: str, fence: str = 'python') -> list:
    """``(heading, source)`` of every ```<fence> block of a page (heading: the nearest #, ## or ### above it)."""
    with open(os.path.join(REPO, page), encoding='utf-8') as f:
        text = f.read()
    blocks, heading = [], ''
    pattern = r'^(#{1,3} [^\n]+)$|^```' + re.escape(fence) + r'\n(.*?)^```'
    for match in re.finditer(pattern, text, flags=re.M | re.S):
        if match.group(1):
            heading = match.group(1).lstrip('#').strip()
        else:
            blocks.append((heading, match.group(2)))
    return blocks


def readme_blocks() -> list:
    """``(page, heading, source)`` of every ```python block of README.md and the docs pages."""
    return [(page, heading, source) for page in PAGES for heading, source in page_blocks(page)]


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
    pages = {page for page, _, _ in BLOCKS}
    assert 'README.md' in pages and len(BLOCKS) >= 12
    found = {(page, heading) for page, heading, _ in BLOCKS}
    for where in (('README.md', 'Quick start: Python'), ('docs/getting-started.md', 'Loading a model'),
                  ('docs/tasks.md', 'Tasks'), ('docs/tasks.md', 'Batched tasks'), ('docs/finetuning.md', 'Fine-tuning'),
                  ('docs/saving.md', 'Saving, loading and publishing models')):
        assert where in found, where
    for page, heading, source in BLOCKS:  # after the substitution every block runs on tiny-shapes
        for name in PUBLISHED:
            assert repr(name) not in on_tiny(source), (page, heading, name)


def test_blocks_not_run_are_listed():
    """Every ```py block (one the test does not run) is on NOT_RUN, and every entry still exists."""
    skipped = {(page, heading) for page in PAGES for heading, _ in page_blocks(page, fence='py')}
    assert skipped == set(NOT_RUN), skipped ^ set(NOT_RUN)


def _block_id(index: int) -> str:
    page, heading, _ = BLOCKS[index]
    return f"{page.removeprefix('docs/')}:{heading}:{index}"


@pytest.mark.parametrize('index', range(len(BLOCKS)), ids=[_block_id(i) for i in range(len(BLOCKS))])
def test_readme_snippet_runs(index, user_files, monkeypatch):
    page, heading, source = BLOCKS[index]
    root, components = user_files
    monkeypatch.chdir(root)
    namespace = {'__name__': '__readme__'}
    code = compile(on_tiny(source), f'{page}[{heading} block {index}]', 'exec')
    used = set(code.co_names)
    namespace.update({k: v for k, v in given_names(**components).items() if k in used and k in GIVEN})
    exec(code, namespace)  # any error fails the test


def test_readme_gives_the_cpu_only_install():
    with open(os.path.join(REPO, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    first = re.search(r'^```bash\n(.*?)^```', text, flags=re.M | re.S).group(1)
    cpu = 'pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu && pip install .'
    assert 'pip install .' in first and cpu in first
