"""MkDocs hook (mkdocs.yml ``hooks:``): the docstrings' Sphinx roles rendered as plain code in the API reference.

The package's docstrings are reStructuredText-flavoured (``:func:`name```, ``:class:`~pkg.Name```); mkdocstrings
renders them as Markdown, which leaves ``:func:`` in front of the code. This drops the role and, as Sphinx does,
shows only the last component of a ``~``-prefixed name.
"""
import re

ROLE = re.compile(r':(?:py:)?(?:mod|func|class|meth|attr|data|exc|obj|const):<code>(~?)([^<]*)</code>')


def _code(match: re.Match) -> str:
    tilde, name = match.groups()
    return f'<code>{name.rsplit(".", 1)[-1] if tilde else name}</code>'


def on_page_content(html: str, **kwargs) -> str:
    return ROLE.sub(_code, html)
