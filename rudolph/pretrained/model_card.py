"""The model card (``README.md``) of a saved model: hub metadata, base model, tasks, parts, training, how to load."""
from typing import Any, List, Mapping, Optional

__all__ = ['model_card']


def model_card(config: Mapping[str, Any], name: str) -> str:
    """The ``README.md`` of a saved model: hub metadata, base model, tasks, training, how to load it."""
    base, repo = config.get('base_model'), config.get('base_model_repo')
    tags = ['rudolph', 'text-to-image', 'image-to-text', 'visual-question-answering', 'safetensors']
    meta = ['---', 'library_name: rudolph', 'language:', '- ru', 'tags:'] + [f'- {t}' for t in tags]
    if repo:
        meta.append(f'base_model: {repo}')
    meta.append('---')
    c = config['config']
    lines = meta + ['', f'# {name}', '',
                    f'A [RuDOLPH](https://github.com/ai-forever/ru-dolph) model saved by `rudolph` '
                    f'{config.get("library_version", "")} (format version {config["format_version"]}).', '',
                    f'- base model: {_base_text(base, repo)}',
                    f'- architecture: {c["num_layers"]} layers, hidden {c["hidden_size"]}, left text '
                    f'{c["l_text_seq_length"]}, image {c["image_tokens_per_dim"]}x{c["image_tokens_per_dim"]} codes '
                    f'({8 * c["image_tokens_per_dim"]} px), right text {c["r_text_seq_length"]}',
                    f'- tasks: {_tasks_text(config.get("spc_tokens") or {})}',
                    f'- tokenizer: {_part_text(config.get("tokenizer"))}',
                    f'- VQGAN: {_part_text(config.get("vae"))}']
    lines += _training_lines(config.get('training'))
    lines += ['', '## How to load', '', '```python', 'from rudolph.pretrained.components import Components',
              '', f"c = Components.from_pretrained('{name}')   # this folder or hub repo id: nothing else needed",
              'from rudolph.api import ruDolphApi', 'api = ruDolphApi(c.model, c.tokenizer, c.vae)', '```', '',
              '```bash', f'rudolph caption img.png --model {name}', '```', '']
    return '\n'.join(lines)


def _base_text(base: Optional[str], repo: Optional[str]) -> str:
    if not base:
        return 'unknown'
    where = f' ([{repo}](https://huggingface.co/{repo}))' if repo else ' (embedded in the rudolph package)'
    return f'`{base}`{where}'


def _tasks_text(spc: Mapping[str, int]) -> str:
    if not spc:
        return 'text-to-image, image-to-text, text (no task tokens: the `rudolph.pipelines` convention)'
    names = {'T2I': 'text-to-image', 'I2T': 'image captioning', 'T2T': 'text', 'TQA': 'text QA'}
    found = sorted({names[k[4:-1]] for k in spc if k[4:-1] in names})
    return ', '.join(found + ['VQA', 'zero-shot classification']) + ' (task tokens: `ruDolphApi`)'


def _part_text(part: Optional[Mapping[str, Any]]) -> str:
    if not part:
        return 'not recorded (pass it when loading)'
    if 'repo_id' in part:
        return f'`{part["filename"]}` of [{part["repo_id"]}](https://huggingface.co/{part["repo_id"]})'
    return f'`{part["file"]}` (in this folder)'


def _training_lines(training: Optional[Mapping[str, Any]]) -> List[str]:
    if not training:
        return []
    lines = ['', '## Training', '']
    labels = (('data', 'data'), ('rows', 'training rows'), ('tasks', 'rows per task'), ('steps', 'optimizer steps'),
              ('epochs', 'epochs'), ('batch_size', 'batch size'), ('grad_accum', 'gradient accumulation'),
              ('lr', 'learning rate'), ('schedule', 'schedule'), ('precision', 'precision'),
              ('last_loss', 'last training loss'), ('eval', 'last evaluation'))
    for key, label in labels:
        if training.get(key) is not None:
            lines.append(f'- {label}: {training[key]}')
    return lines
