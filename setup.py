import os
import re

from setuptools import find_packages, setup

here = os.path.dirname(os.path.abspath(__file__))


def read(name: str) -> str:
    with open(os.path.join(here, name), encoding='utf-8') as f:
        return f.read()


def version() -> str:
    return re.search(r"__version__ = '([^']+)'", read('rudolph/__init__.py')).group(1)


def requirements() -> list:
    return [line.strip() for line in read('requirements.txt').splitlines()
            if line.strip() and not line.startswith('#')]


setup(
    name='rudolph',
    version=version(),
    description='RuDOLPH: the Russian text-image-text hyper-modal transformer, installable on current Python',
    long_description=read('README.md'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['rudolph', 'rudolph.*']),
    include_package_data=True,
    package_data={'rudolph': ['demo/weights/tiny-shapes/*']},
    install_requires=requirements(),
    extras_require={
        'test': ['pytest>=7', 'pytest-xdist', 'faker>=18', 'accelerate>=0.26', 'PyWavelets',
                 'nbclient', 'nbformat', 'ipykernel'],
        'finetune': ['accelerate>=0.26'],
        'app': ['gradio>=6'],
    },
    entry_points={'console_scripts': ['rudolph=rudolph.cli:main']},
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
)
