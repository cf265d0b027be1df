"""Label presets the course uses, and parsing of `--labels fer2013|food11|a,b,c`."""
from __future__ import annotations

from .errors import BadInputError

PRESETS: dict[str, tuple[str, ...]] = {
    "fer2013": ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"),
    "food11": (
        "Bread", "Dairy product", "Dessert", "Egg", "Fried food", "Meat",
        "Noodles/Pasta", "Rice", "Seafood", "Soup", "Vegetable/Fruit",
    ),
    "digits": tuple(str(i) for i in range(10)),
}


def parse_labels(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...] | None:
    """A preset name, a comma-separated list, or a sequence of names."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    key = value.strip().lower()
    if key in PRESETS:
        return PRESETS[key]
    names = tuple(v.strip() for v in value.split(","))
    if len(names) < 2 or any(not n for n in names):
        raise BadInputError(
            f"labels={value!r} is neither a preset ({', '.join(sorted(PRESETS))}) "
            "nor a comma-separated list of at least two names such as 'cat,dog'", params=("labels",))
    return names
