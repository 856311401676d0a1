"""Embedding cache: extract once per (backbone, dataset, split, subset), reuse for every head, seed and rho.

An entry is two files under `<root>/embeddings/<backbone>/<dataset>/`:
`<split>-<key16>.safetensors` (tensors `x` float32 [N, d] and, when labelled, `y` int64 [N]) and
`<split>-<key16>.json`, the manifest: the full key (backbone id and weights fingerprint, dataset,
split, subset, preprocessing, pooling, dtype), the tensors' shapes and dtypes, the file's byte size and
sha256, and the extraction time. Both files are written atomically (temp file + `os.replace`), the
manifest last, so a manifest always describes a complete tensor file. A cross-process file lock makes
concurrent runs (a joblib sweep) extract an entry once.

On load the manifest's key, the file's size and sha256, and the tensors' shapes and dtypes are checked;
any mismatch is logged with its reason and the entry is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from glai.errors import ConfigError
from glai.names import path_part

__all__ = ["CacheEntry", "EmbeddingCache", "atomic_write_bytes", "cache_folder", "key_hash", "memoised_json",
           "sha256_file", "unwritable_cache"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def _canonical(obj: Any) -> Any:
    """The JSON round trip of `obj` (tuples become lists), so keys compare equal after reading back."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def key_hash(key: dict) -> str:
    """sha256 hex of the canonical JSON of a cache key."""
    return hashlib.sha256(json.dumps(_canonical(key), sort_keys=True).encode()).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 hex digest of a file's bytes, read in chunks of ``chunk`` bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_folder(folder: Path) -> Path:
    """``folder`` (under ``cache_dir``), created when missing.

    Raises:
        ConfigError: it cannot be created or written (a read-only ``GLAI_CACHE_DIR``, a file in its way), naming
            ``cache_dir`` / ``GLAI_CACHE_DIR`` and the fix; raised before any extraction.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(13, "Permission denied", str(folder))
    except OSError as err:
        raise unwritable_cache(folder, err) from err
    return folder


def unwritable_cache(path: Path, err: OSError) -> ConfigError:
    """The one-line error of a cache folder or file that cannot be written."""
    return ConfigError(f"cache_dir: cannot write {path} ({err.strerror or err}): the embedding cache and its memos "
                       "live under cache_dir (GLAI_CACHE_DIR, default .cache/glai). Fix: GLAI_CACHE_DIR= a writable "
                       "folder (or cache_dir=...)")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``: readers see
    the old file or the whole new one, never a part."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()



def memoised_json(path: Path | None, compute: Callable[[], Any]) -> Any:
    """``compute()``'s JSON-serialisable result, memoised at ``path`` (whose name carries the key); ``path``
    None computes without a memo. An unreadable memo is logged and computed again; the memo is written
    atomically, so parallel jobs never read a part of it."""
    if path is not None and path.exists():
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            log.warning("unreadable memo %s; computing it again", path)
    if path is not None:
        cache_folder(path.parent)  # before the work: a cache that cannot be written stops here
    value = compute()
    if path is not None:
        try:
            atomic_write_bytes(path, json.dumps(value, sort_keys=True).encode())
        except OSError as err:
            raise unwritable_cache(path, err) from err
    return value

@dataclass
class CacheEntry:
    """Paths of one entry."""

    tensors: Path
    manifest: Path
    lock: Path


class EmbeddingCache:
    """Safetensors + JSON-manifest store of embeddings.

    Args:
        root: cache folder (`cache_dir`, GLAI_CACHE_DIR); entries live under `<root>/embeddings/`.

    Attributes:
        events: one dict per `get_or_compute` call: {"entry", "status": "hit" | "built" | "rebuilt",
            "reason", "seconds"} (read by scripts/cache_embeddings.py and the tests).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.events: list[dict] = []

    def entry(self, key: dict) -> CacheEntry:
        """Where the entry of `key` lives. `key` must hold "backbone"."name", "dataset"."name", "split".

        Raises:
            ConfigError: a name that would leave the cache folder (``..``, ``.``, empty; :func:`glai.names.path_part`).
        """
        h = key_hash(key)[:16]
        # the names become folders under the root: path_part keeps them there ('..' is refused, '/' replaced)
        folder = (self.root / "embeddings" / path_part("backbone.name", key["backbone"]["name"])
                  / path_part("dataset.name", key["dataset"]["name"]))
        stem = f"{path_part('dataset split', key['dataset']['split'], fix='dataset.train_split=train')}-{h}"
        return CacheEntry(folder / f"{stem}.safetensors", folder / f"{stem}.json", folder / f"{stem}.lock")

    def load(self, key: dict) -> tuple[dict[str, torch.Tensor] | None, str]:
        """The tensors of `key`, or (None, reason) when the entry is missing or invalid.

        Returns:
            ({"x": float32 [N, d], "y"?: int64 [N]}, "ok") on a valid entry; (None, why) otherwise.
        """
        e = self.entry(key)
        if not e.manifest.exists():
            return None, "missing"
        try:
            manifest = json.loads(e.manifest.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            return None, f"unreadable manifest ({exc})"
        if manifest.get("format_version") != FORMAT_VERSION:
            return None, f"format version {manifest.get('format_version')} != {FORMAT_VERSION}"
        if manifest.get("key") != _canonical(key):
            return None, "key mismatch (manifest was written for another backbone / dataset / preprocessing)"
        if not e.tensors.exists():
            return None, "tensor file missing"
        size = e.tensors.stat().st_size
        if size != manifest.get("bytes"):
            return None, f"size mismatch ({size} bytes on disk, {manifest.get('bytes')} in the manifest)"
        digest = sha256_file(e.tensors)
        if digest != manifest.get("sha256"):
            return None, "checksum mismatch (sha256 of the tensor file differs from the manifest)"
        try:
            from safetensors.torch import load_file

            tensors = load_file(str(e.tensors))
        except Exception as exc:  # noqa: BLE001 - any decode failure means a corrupt entry
            return None, f"unreadable tensor file ({exc})"
        for name, meta in manifest.get("tensors", {}).items():
            t = tensors.get(name)
            if t is None:
                return None, f"tensor {name!r} missing"
            if list(t.shape) != meta["shape"] or str(t.dtype).replace("torch.", "") != meta["dtype"]:
                return None, (f"tensor {name!r} is {list(t.shape)} {t.dtype}, manifest says "
                              f"{meta['shape']} {meta['dtype']}")
        if set(tensors) != set(manifest.get("tensors", {})):
            return None, "tensor names differ from the manifest"
        return tensors, "ok"

    def save(self, key: dict, tensors: dict[str, torch.Tensor], extra: dict | None = None) -> CacheEntry:
        """Write `tensors` for `key` atomically (tensor file, then manifest)."""
        from safetensors.torch import save

        e = self.entry(key)
        cache_folder(e.tensors.parent)
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        data = save(tensors, metadata={"key_sha256": key_hash(key)})
        try:
            atomic_write_bytes(e.tensors, data)
        except OSError as err:
            raise unwritable_cache(e.tensors, err) from err
        manifest = {
            "format_version": FORMAT_VERSION,
            "key_sha256": key_hash(key),
            "key": _canonical(key),
            "file": e.tensors.name,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
                        for k, v in tensors.items()},
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **(_canonical(extra) if extra else {}),
        }
        try:
            atomic_write_bytes(e.manifest, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
        except OSError as err:
            raise unwritable_cache(e.manifest, err) from err
        return e

    def invalidate(self, key: dict) -> None:
        """Delete the entry of `key` (manifest first, so a reader never sees a manifest without tensors)."""
        e = self.entry(key)
        for p in (e.manifest, e.tensors):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

    def get_or_compute(
        self, key: dict, compute: Callable[[], dict[str, torch.Tensor]], extra: dict | None = None
    ) -> dict[str, torch.Tensor]:
        """The cached tensors of `key`, computing and storing them on a miss or an invalid entry.

        Args:
            key: JSON-able cache key (backbone, dataset, split, preprocessing).
            compute: returns {"x": float32 [N, d], "y"?: int64 [N]}; called at most once, under a lock.
            extra: JSON-able fields added to the manifest (e.g. the dataset's subset description).

        Returns:
            The tensors, from the cache or freshly computed.
        """
        from filelock import FileLock

        e = self.entry(key)
        tensors, reason = self.load(key)
        if tensors is not None:
            self.events.append({"entry": str(e.tensors), "status": "hit", "reason": reason, "seconds": 0.0})
            return tensors
        cache_folder(e.lock.parent)
        with FileLock(str(e.lock)):
            # another process may have built it while we waited for the lock
            tensors, reason = self.load(key)
            if tensors is not None:
                self.events.append({"entry": str(e.tensors), "status": "hit", "reason": reason, "seconds": 0.0})
                return tensors
            status = "built" if reason == "missing" else "rebuilt"
            if status == "rebuilt":
                log.warning("embedding cache entry %s is invalid: %s; rebuilding it", e.tensors, reason)
                self.invalidate(key)
            t0 = time.perf_counter()
            tensors = compute()
            seconds = time.perf_counter() - t0
            self.save(key, tensors, extra={**(extra or {}), "extract_time_s": round(seconds, 3)})
        self.events.append({"entry": str(e.tensors), "status": status, "reason": reason, "seconds": seconds})
        log.info("embedding cache %s %s in %.1f s", status, e.tensors, seconds)
        return tensors
