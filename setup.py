"""Install mmvideoeq. The pinned stack lives in requirements.txt and is installed by
``tools/install.sh`` (mmcv 2.1.0 must be compiled with ops; see README.md, "Set-up")."""

from setuptools import find_packages, setup


def read_version() -> str:
    scope: dict = {}
    with open('mmvideoeq/version.py') as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='mmvideoeq',
    version=read_version(),
    description='OpenMMLab 3.x extension for streaming video perception with deep-equilibrium '
    'and recursive backbones',
    # benchgen: the bundled-benchmark generator (a tool; mmvideoeq never imports it)
    packages=find_packages(include=['mmvideoeq', 'mmvideoeq.*', 'benchgen', 'benchgen.*']),
    python_requires='>=3.10',
    # Kept loose on purpose: the exact, tested pins are in requirements.txt. The DEQ core and the
    # streaming layer need only torch.
    install_requires=['torch>=2.1', 'numpy'],
    extras_require={
        'mm': ['mmengine==0.10.7', 'mmcv==2.1.0', 'mmdet==3.3.0', 'mmsegmentation==1.2.2'],
    },
    license='Apache-2.0',
    zip_safe=False,
)
