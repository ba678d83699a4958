"""Every checkpoint scheme of mmengine's ``CheckpointLoader``, loaded weights-only.

mmengine's own loaders call ``torch.hub.load_state_dict_from_url`` or ``torch.load`` with
``weights_only=False`` or unset, which runs any code a pickle carries (a malicious file already
in the torch hub cache runs before any check). :func:`install_safe_checkpoint_loader` (called by
``register_all_modules``) replaces the loader of every scheme (``load_from``, ``--resume``,
``Pretrained`` init of any backbone) so that each ends in
:func:`~.checkpoint.safe_load_checkpoint`:

* local files;
* ``http(s)://``: the file torch.hub keeps for the URL, ``$TORCH_HOME/hub/checkpoints/<name>``
  (downloaded there with torch.hub's downloader first when absent; without network the error
  says so and where to put the file);
* ``torchvision://`` / ``modelzoo://``, ``open-mmlab://`` / ``openmmlab://``, ``mmcls://``: the
  URL or path of mmengine's name tables, then as above;
* ``pavi://``, ``s3://`` / ``petrel://``: fetched with pavi / mmengine's file backends.

A scheme registered by any other library is refused (:class:`~.checkpoint.UnsafeCheckpointError`).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable
from urllib.parse import urlparse

import torch

from .checkpoint import CheckpointDownloadError, UnsafeCheckpointError, safe_load_checkpoint

__all__ = [
    'SAFE_CHECKPOINT_SCHEMES',
    'hub_cache_file',
    'install_safe_checkpoint_loader',
    'load_checkpoint_weights_only',
]


def load_from_local_weights_only(filename: str, map_location=None) -> Any:
    """mmengine loader of local files (mmengine logs it as the `local_weights_only` backend)."""
    return safe_load_checkpoint(filename, map_location=map_location or 'cpu')


def hub_cache_file(url: str, model_dir: str | None = None) -> str:
    """Where ``torch.hub.load_state_dict_from_url`` keeps the file of ``url``.

    Args:
        url: An ``http(s)://`` URL.
        model_dir: The cache folder; defaults to ``torch.hub.get_dir()/checkpoints`` (that is
            ``$TORCH_HOME/hub/checkpoints``), as torch.hub's.

    Returns:
        str: ``model_dir/<last part of the URL path>``.
    """
    name = os.path.basename(urlparse(url).path)
    if not name:
        raise ValueError(f'checkpoint URL {url!r} does not end in a file name')
    return os.path.join(model_dir or os.path.join(torch.hub.get_dir(), 'checkpoints'), name)


def _download(url: str, dst: str) -> None:
    """Download ``url`` to ``dst`` with torch.hub's downloader (nothing is unpickled here)."""
    try:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        torch.hub.download_url_to_file(url, dst, progress=os.isatty(2))
    except Exception as err:  # noqa: BLE001 - URLError, HTTPError, socket errors, a full disk
        raise CheckpointDownloadError(
            f'checkpoint {url!r} is not in the torch hub cache and could not be downloaded '
            f'({type(err).__name__}: {err}); no network? Download it elsewhere and put it at '
            f'{dst!r} (the cache torch.hub uses, $TORCH_HOME/hub/checkpoints), or give its '
            'local path instead of the URL'
        ) from None


def load_from_http_weights_only(filename: str, map_location=None, model_dir=None) -> Any:
    """``http(s)://``: the torch hub cache file of the URL (downloaded first if absent; in
    distributed runs rank 0 downloads, as mmengine's ``load_from_http``), loaded weights-only."""
    from mmengine.dist import barrier, get_dist_info

    cached = hub_cache_file(filename, model_dir)
    rank, world_size = get_dist_info()
    if rank == 0 and not os.path.isfile(cached):
        _download(filename, cached)
    if world_size > 1:
        barrier()
        if not os.path.isfile(cached):  # another node without a shared cache
            _download(filename, cached)
    return safe_load_checkpoint(cached, map_location or 'cpu', source=f'{filename} ({cached})')


def _named_url(table: dict, name: str, scheme: str) -> str:
    if name not in table:
        near = ', '.join(sorted(k for k in table if k.split('.')[0] == name.split('.')[0])[:8])
        raise ValueError(
            f'{scheme}{name} is not a model name mmengine knows'
            + (f' (similar: {near})' if near else '')
        )
    return table[name]


def _torchvision_urls() -> dict:
    """mmengine's name -> URL table of ``torchvision://`` (without torchvision installed, the
    table mmengine ships for torchvision 0.12, which has the classic names like ``resnet50``)."""
    import mmengine
    from mmengine.runner.checkpoint import get_torchvision_models

    try:
        return get_torchvision_models()
    except ImportError:
        path = os.path.join(mmengine.__path__[0], 'hub', 'torchvision_0.12.json')
        return mmengine.load(path)


def load_from_torchvision_weights_only(filename: str, map_location=None) -> Any:
    """``torchvision://name`` (or the deprecated ``modelzoo://name``): its URL, weights-only."""
    scheme = 'modelzoo://' if filename.startswith('modelzoo://') else 'torchvision://'
    url = _named_url(_torchvision_urls(), filename[len(scheme) :], scheme)
    return load_from_http_weights_only(url, map_location=map_location)


def load_from_openmmlab_weights_only(filename: str, map_location=None) -> Any:
    """``open-mmlab://name`` / ``openmmlab://name``: mmengine's table (and deprecated names);
    a URL is loaded as :func:`load_from_http_weights_only`, a path under mmengine's home
    weights-only."""
    from mmengine.runner.checkpoint import (
        _get_mmengine_home,
        get_deprecated_model_names,
        get_external_models,
    )

    scheme = 'open-mmlab://' if filename.startswith('open-mmlab://') else 'openmmlab://'
    name = filename[len(scheme) :]
    name = get_deprecated_model_names().get(name, name)
    url = _named_url(get_external_models(), name, scheme)
    if url.startswith(('http://', 'https://')):
        return load_from_http_weights_only(url, map_location=map_location)
    return safe_load_checkpoint(os.path.join(_get_mmengine_home(), url), map_location or 'cpu')


def load_from_mmcls_weights_only(filename: str, map_location=None) -> Any:
    """``mmcls://name``: mmengine's table, weights-only, then its backbone keys (as mmengine)."""
    from mmengine.runner.checkpoint import _process_mmcls_checkpoint, get_mmcls_models

    url = _named_url(get_mmcls_models(), filename[len('mmcls://') :], 'mmcls://')
    return _process_mmcls_checkpoint(load_from_http_weights_only(url, map_location=map_location))


def _load_bytes(data: bytes, source: str, map_location) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'checkpoint.pth')
        with open(path, 'wb') as f:
            f.write(data)
        return safe_load_checkpoint(path, map_location or 'cpu', source=source)


def load_from_pavi_weights_only(filename: str, map_location=None) -> Any:
    """``pavi://``: downloaded with pavi's model cloud (as mmengine), loaded weights-only."""
    try:
        from pavi import modelcloud
    except ImportError:
        raise ImportError('pavi:// checkpoints need the pavi package (pip install pavi)') from None
    model = modelcloud.get(filename[len('pavi://') :])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, model.name)
        model.download(path)
        return safe_load_checkpoint(path, map_location or 'cpu', source=filename)


def load_from_ceph_weights_only(filename: str, map_location=None, backend='petrel') -> Any:
    """``s3://`` / ``petrel://``: read with mmengine's file backend, loaded weights-only."""
    from mmengine.fileio import get_file_backend

    data = get_file_backend(filename, backend_args={'backend': backend}).get(filename)
    return _load_bytes(data, filename, map_location)


#: mmengine 0.10's ``CheckpointLoader`` schemes and their weights-only replacements.
SAFE_CHECKPOINT_SCHEMES: dict[str, Callable] = {
    '': load_from_local_weights_only,
    'http://': load_from_http_weights_only,
    'https://': load_from_http_weights_only,
    'modelzoo://': load_from_torchvision_weights_only,
    'torchvision://': load_from_torchvision_weights_only,
    'open-mmlab://': load_from_openmmlab_weights_only,
    'openmmlab://': load_from_openmmlab_weights_only,
    'mmcls://': load_from_mmcls_weights_only,
    'pavi://': load_from_pavi_weights_only,
    r'(\S+\:)?s3://': load_from_ceph_weights_only,
    r'(\S+\:)?petrel://': load_from_ceph_weights_only,
}


def _refusing_loader(prefix: str) -> Callable:
    def load_from_unverified_scheme(filename: str, map_location=None) -> Any:
        raise UnsafeCheckpointError(
            f'refused to load checkpoint {filename!r}: its scheme {prefix!r} has no '
            'weights-only loader in mmvideoeq (its loader might unpickle code). Download the '
            'file and give its local path'
        )

    return load_from_unverified_scheme


def install_safe_checkpoint_loader() -> None:
    """Route every scheme of mmengine's ``CheckpointLoader`` (``load_from``, ``--resume``,
    ``Pretrained`` init) through :func:`safe_load_checkpoint` (idempotent).

    The schemes of :data:`SAFE_CHECKPOINT_SCHEMES` get their weights-only loader; any other
    registered scheme (another library's) is refused with :class:`UnsafeCheckpointError`.
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    for prefix in list(getattr(CheckpointLoader, '_schemes', {})):
        if prefix not in SAFE_CHECKPOINT_SCHEMES:
            CheckpointLoader.register_scheme(prefix, loader=_refusing_loader(prefix), force=True)
    for prefix, loader in SAFE_CHECKPOINT_SCHEMES.items():
        CheckpointLoader.register_scheme(prefixes=prefix, loader=loader, force=True)


def load_checkpoint_weights_only(filename: str, map_location: Any = 'cpu') -> Any:
    """Load a checkpoint of any mmengine scheme (local path, URL, ``torchvision://``, ...)
    weights-only (see :func:`install_safe_checkpoint_loader`).

    Args:
        filename: The path or URL.
        map_location: As in :func:`torch.load`.

    Returns:
        The loaded checkpoint.
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    install_safe_checkpoint_loader()
    return CheckpointLoader.load_checkpoint(str(filename), map_location=map_location)
