"""snnc: compile trained spiking neural networks for neuromorphic targets and prove spike equivalence.

Python API::

    import snnc
    art = snnc.compile("model.nir", target="cpu", out_dir="build/model")
    rasters = art.run({"input": spikes})          # {population: Raster}
    art = snnc.load("build/model")
    graph = snnc.export(torch_model, sample_input, path="model.nir")   # snnTorch, snnc.nn or Norse
    qmodel = snnc.qat(torch_model, weight_bits=4)  # fake-quantized copy to fine-tune; snnc.qat.freeze(qmodel)
"""

__version__ = "0.1.0"


def compile(*args, **kwargs):  # noqa: A001
    """See :func:`snnc.api.compile`."""
    from snnc.api import compile as _compile

    return _compile(*args, **kwargs)


def export(model, sample_input, dt=None, reset=None, path=None):
    """See :func:`snnc.api.export`."""
    from snnc.api import export as _export

    return _export(model, sample_input, dt=dt, reset=reset, path=path)


def load(path):
    """See :func:`snnc.api.load`."""
    from snnc.api import load as _load

    return _load(path)


def __getattr__(name):
    # snnc.qat is the callable module snnc/qat.py (imported on first use: it needs torch)
    if name == "qat":
        import importlib

        return importlib.import_module("snnc.qat")
    raise AttributeError(f"module 'snnc' has no attribute '{name}'")
