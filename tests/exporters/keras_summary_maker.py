"""Builds Keras models whose `model.summary()` the exporter must reproduce, in its own process:
`python keras_summary_maker.py OUTDIR`. Saves each as NAME.h5 and NAME.summary.txt, the text Keras'
own `model.summary()` prints (the oracle the tests parse), at a width where no row wraps."""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

L = tf_keras.layers


def homework_cnn() -> tf_keras.Model:
    """The course's CNN, shrunk: 4 conv blocks (Conv-BN-ReLU-Pool-Dropout), then Dense-BN x2 and a softmax;
    a Sequential whose first layer takes input_shape (no InputLayer)."""
    layers: list = []
    for i, filters in enumerate((8, 12, 16, 20)):
        extra = {"input_shape": (48, 48, 1)} if i == 0 else {}
        layers += [L.Conv2D(filters, 3, padding="same", **extra), L.BatchNormalization(), L.Activation("relu"),
                   L.MaxPooling2D(), L.Dropout(0.25)]
    layers += [L.Flatten(), L.Dense(32), L.BatchNormalization(), L.Activation("relu"), L.Dropout(0.5),
               L.Dense(16), L.BatchNormalization(), L.Activation("relu"), L.Dense(7, activation="softmax")]
    return tf_keras.Sequential(layers)


def functional_dense_bn() -> tf_keras.Model:
    inp = L.Input((20, 20, 1))
    x = L.Conv2D(6, 3, activation="relu")(inp)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(10, name="fc")(x)
    x = L.BatchNormalization(name="fc_bn")(x)
    x = L.LeakyReLU()(x)
    return tf_keras.Model(inp, L.Dense(4, activation="softmax")(x))


def separable() -> tf_keras.Model:
    inp = L.Input((24, 24, 1))
    x = L.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    x = L.SeparableConv2D(16, 3, padding="same")(x)
    x = L.BatchNormalization()(x)
    x = L.Add()([x, L.Conv2D(16, 1)(x)])
    x = L.SeparableConv2D(7, 3, depth_multiplier=2)(x)
    x = L.GlobalAveragePooling2D()(x)
    return tf_keras.Model(inp, L.Activation("softmax")(x))


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tf.config.set_visible_devices([], "GPU")
    tf_keras.utils.set_random_seed(0)
    for name, build in (("homework_cnn", homework_cnn), ("functional_dense_bn", functional_dense_bn),
                        ("separable", separable)):
        model = build()
        model(np.zeros((1, *model.inputs[0].shape[1:]), np.float32))
        model.save(out / f"{name}.h5")
        lines: list[str] = []
        model.summary(line_length=200, print_fn=lambda line, **_: lines.append(line))
        (out / f"{name}.summary.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
