"""Builds small seeded Keras files for the exporter tests, in its own process:
`python keras_maker.py OUTDIR`. (The test process itself must never import TensorFlow.)

For each exportable model it also saves 8 seeded inputs and the outputs Keras computes on them
(`NAME.x.npy`, `NAME.y.npy`): an oracle independent of the exporter's own parity check. `names.json`
lists each file's Keras layer names (nested models included).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402  (Keras 3)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402  (Keras 2 semantics, writes .h5 files like the ones students submit)
import yaml  # noqa: E402


def all_layer_names(model) -> list[str]:
    names = []
    for layer in model.layers:
        names.append(layer.name)
        if hasattr(layer, "layers"):
            names.extend(all_layer_names(layer))
    return names


def save_reference(out: Path, name: str, model, shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(1).uniform(0, 1, size=(8, *shape)).astype(np.float32)
    np.save(out / f"{name}.x.npy", x)
    np.save(out / f"{name}.y.npy", np.asarray(model(x, training=False)))


def randomise_bn(model) -> None:
    """Non-trivial BatchNorm statistics so folding them is really exercised."""
    rng = np.random.default_rng(2)
    for layer in model.layers:
        if "batch_normalization" in layer.name or layer.__class__.__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.uniform(-0.2, 0.2, beta.shape),
                               rng.uniform(-0.5, 0.5, mean.shape), rng.uniform(0.5, 2.0, var.shape)])


def tf_keras_files(out: Path, names: dict) -> None:
    L = tf_keras.layers
    tf_keras.utils.set_random_seed(0)
    # A Sequential with a Lambda layer (marshalled Python bytecode in the h5 config).
    lam = tf_keras.Sequential([L.InputLayer((16, 16, 1)), L.Conv2D(4, 3, activation="relu"),
                               L.Lambda(lambda t: t * 2.0, name="double"), L.Flatten(),
                               L.Dense(3, activation="softmax")])
    lam.save(out / "lambda_seq.h5")
    save_reference(out, "lambda_seq", lam, (16, 16, 1))
    names["lambda_seq"] = all_layer_names(lam)

    # A Lambda whose code, if it ever runs, leaves a marker file behind.
    marker = out / "lambda_ran.marker"
    spy = eval(f"lambda t: (open({str(marker)!r}, 'w').close(), t)[1]")  # code constant, survives marshal
    spying = tf_keras.Sequential([L.InputLayer((8, 8, 1)), L.Lambda(spy, name="spy"), L.Flatten(), L.Dense(2)])
    spying.save(out / "marker_lambda.h5")
    marker.unlink()

    # A custom layer class: the code is not in the file.
    class MyScale(L.Layer):
        def call(self, inputs):
            return inputs * 3.0

    custom = tf_keras.Sequential([L.InputLayer((8, 8, 1)), MyScale(name="my_scale"), L.Flatten(), L.Dense(2)])
    custom.save(out / "custom_layer.h5")

    # Functional model with a nested Sequential block, BN and a residual Add (names must come out exact).
    inp = L.Input((20, 20, 3))
    x = L.Conv2D(8, 3, padding="same", name="stem_conv")(inp)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.Activation("relu")(x)
    block = tf_keras.Sequential([L.Conv2D(8, 3, padding="same", name="inner_conv"), L.ReLU()], name="block")
    x = L.Add()([x, block(x)])
    x = L.MaxPooling2D()(x)
    x = L.GlobalAveragePooling2D()(x)
    nested = tf_keras.Model(inp, L.Dense(5, activation="softmax", name="head")(x))
    randomise_bn(nested)
    nested.save(out / "tfk_nested.h5")
    save_reference(out, "tfk_nested", nested, (20, 20, 3))
    names["tfk_nested"] = all_layer_names(nested)

    # Weights only, plus its architecture as JSON and as YAML.
    seq = tf_keras.Sequential([L.Conv2D(6, 3, activation="relu", input_shape=(12, 12, 1)), L.BatchNormalization(),
                               L.MaxPooling2D(), L.Flatten(), L.Dropout(0.3), L.Dense(4, activation="softmax")])
    randomise_bn(seq)
    seq.save_weights(out / "tfk_weights.h5")
    (out / "tfk_arch.json").write_text(seq.to_json())
    (out / "tfk_arch.yaml").write_text(yaml.safe_dump(json.loads(seq.to_json())))
    save_reference(out, "tfk_weights", seq, (12, 12, 1))
    names["tfk_weights"] = all_layer_names(seq)

    # A plain DNN on flattened 12x12 gray images (the course's CNN-vs-DNN comparison), and one on 150 values,
    # which is no square image.
    dnn = tf_keras.Sequential([L.Dense(16, activation="relu", input_shape=(144,)), L.Dropout(0.2),
                               L.Dense(16, activation="relu"), L.Dense(4, activation="softmax")])
    dnn.save(out / "tfk_dnn.h5")
    save_reference(out, "tfk_dnn", dnn, (144,))
    names["tfk_dnn"] = all_layer_names(dnn)
    tf_keras.Sequential([L.Dense(3, input_shape=(150,))]).save(out / "tfk_dnn150.h5")

    # Any image size: the export needs --input-shape.
    anysize = tf_keras.Sequential([L.InputLayer((None, None, 1)), L.Conv2D(4, 3, padding="same"),
                                   L.GlobalAveragePooling2D(), L.Dense(3)])
    anysize.save(out / "any_size.h5")
    save_reference(out, "any_size", anysize, (24, 24, 1))


def keras3_files(out: Path, names: dict) -> None:
    L = keras.layers
    keras.utils.set_random_seed(0)
    # Inner layers named conv2d and conv2d_1 (6->5 and 5->4 channels) beside an outer conv2d_2: TF scopes
    # come out as inner_1/conv2d_1 and inner_1/conv2d_1_1, so names parsed from scopes would be wrong.
    inner = keras.Sequential([keras.Input((8, 8, 6)), L.Conv2D(5, 3, padding="same"),
                              L.Conv2D(4, 3, padding="same")], name="inner")
    inp = keras.Input((18, 18, 1))
    x = L.Conv2D(6, 3)(inp)
    x = L.BatchNormalization()(x)
    x = L.MaxPooling2D()(x)
    x = inner(x)
    x = L.Flatten()(x)
    model = keras.Model(inp, L.Dense(4, activation="softmax")(x))
    randomise_bn(model)
    model.save(out / "k3_nested.keras")
    save_reference(out, "k3_nested", model, (18, 18, 1))
    names["k3_nested"] = all_layer_names(model)

    model.save(out / "k3_legacy.h5")
    save_reference(out, "k3_legacy", model, (18, 18, 1))
    names["k3_legacy"] = all_layer_names(model)

    lam = keras.Sequential([keras.Input((8, 8, 1)), L.Lambda(lambda t: t + 1.0), L.Flatten(), L.Dense(2)])
    lam.save(out / "k3_lambda.keras")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tf.config.set_visible_devices([], "GPU")
    names: dict[str, list[str]] = {}
    tf_keras_files(out, names)
    keras3_files(out, names)
    (out / "names.json").write_text(json.dumps(names, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
