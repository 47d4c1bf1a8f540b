"""Whether a number of images fits in memory, checked before anything is rendered.

A dataset is held as uint8 arrays, so ``n`` images of ``size`` × ``size`` pixels take at least
``n × size² × 3`` bytes (RGB): a size the machine cannot hold is refused in one line naming the
key, instead of numpy failing to allocate terabytes half-way through a command.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError

CHANNELS = 3


def available_memory() -> int | None:
    """Bytes the system can give without swapping (psutil when installed, else /proc/meminfo's
    MemAvailable); None where neither says."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _size(n: float) -> str:
    """Bytes in binary units: "2.7 PiB"."""
    unit = "bytes"
    for bigger in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024:
            break
        n, unit = n / 1024, bigger
    return f"{n:.0f} bytes" if unit == "bytes" else f"{n:.1f} {unit}"


def check_images_fit(key: str, images: int, image_size: int, channels: int = CHANNELS) -> None:
    """Refuse ``images`` images of ``image_size``² × ``channels`` bytes that exceed the memory
    available now: "KEY: expected images that fit in memory (… available), got N (… needed)".
    ``key`` names the input (a config key such as ``evaluator.images``, or a flag such as ``--n``)."""
    have = available_memory()
    need = int(images) * int(image_size) ** 2 * channels
    if have is not None and need > have:
        raise ConfigError(f"{key}: expected images that fit in memory ({_size(have)} available), got {images} "
                          f"({image_size}×{image_size}×{channels} bytes each: {_size(need)} needed)")


def image_size_of(generator) -> int | None:
    """The side of a generator's square images, where it says (``image_size``)."""
    size = getattr(generator, "image_size", None)
    return size if isinstance(size, int) and not isinstance(size, bool) else None



def check_config_images(cfg, n: int, key: str = "--n") -> None:
    """``n`` images (``key``: ``--n``) of the config's generator fit in memory: refused before anything renders
    or Ray starts (the generator's GL context is not opened to ask its image size)."""
    generator = cfg.build_generator()
    generator.close()
    size = image_size_of(generator)
    if size is not None:
        check_images_fit(key, n, size)


__all__ = ["available_memory", "check_config_images", "check_images_fit", "image_size_of"]
