"""ads: pick the unlabeled data worth labeling. ``ads.value`` is :func:`ads.valuers.value`
(imported on first use, so ``import ads.errors`` stays light)."""


def __getattr__(name):
    if name == "value":
        from ads.valuers import value

        return value
    raise AttributeError(f"module 'ads' has no attribute {name!r}")
