"""snnc: compile trained spiking neural networks for neuromorphic targets and prove spike equivalence.

Python API::

    import snnc
    art = snnc.compile("model.nir", target="cpu", out_dir="build/model")
    rasters = art.run({"input": spikes})          # {population: Raster}
    art = snnc.load("build/model")
"""

__version__ = "0.1.0"


def compile(*args, **kwargs):  # noqa: A001
    """See :func:`snnc.api.compile`."""
    from snnc.api import compile as _compile

    return _compile(*args, **kwargs)


def load(path):
    """See :func:`snnc.api.load`."""
    from snnc.api import load as _load

    return _load(path)
