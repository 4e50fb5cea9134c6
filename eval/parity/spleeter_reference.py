"""Runs inside the isolated Spleeter 2.4.2 environment (TensorFlow 2.12); never imported by stylecraft.

Subcommands:

* ``perturb MODEL_DIR SEED``: rewrites the latest checkpoint in MODEL_DIR with every batch-norm
  ``moving_mean`` / ``moving_variance`` replaced by random values. ``spleeter train`` never runs
  the batch-norm update ops, so a freshly trained checkpoint has mean 0 and variance 1 everywhere,
  and a port that confused the two statistics (or ignored them) would still agree with Spleeter.
  After this rewrite, every statistic changes the output.
* ``separate CONFIG WAVEFORM_NPY OUT_NPZ``: separates a float32 ``[samples, channels]`` array at 44.1 kHz with ``spleeter.separator.Separator`` (the
  TensorFlow estimator path that ``spleeter separate`` uses) and saves the float32 stems, without
  the 16-bit rounding of Spleeter's WAV writer.
* ``variables MODEL_DIR OUT_JSON``: names, shapes and float64 checksums of every variable in the
  latest checkpoint, read with TensorFlow's own reader, to check stylecraft's reader against.
"""

from __future__ import annotations

import hashlib
import json
import sys


def perturb(model_dir: str, seed: int) -> None:
    import numpy as np
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    ckpt = tf.train.latest_checkpoint(model_dir)
    reader = tf.train.load_checkpoint(ckpt)
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    rng = np.random.default_rng(seed)
    graph = tf.Graph()
    changed = 0
    with graph.as_default():
        variables = []
        for name in sorted(shapes):
            value = reader.get_tensor(name)
            if name.endswith("/moving_mean"):
                value = rng.normal(0.0, 0.3, size=value.shape).astype(value.dtype)
                changed += 1
            elif name.endswith("/moving_variance"):
                value = rng.uniform(0.3, 3.0, size=value.shape).astype(value.dtype)
                changed += 1
            variables.append(tf.compat.v1.Variable(value, name=name, dtype=dtypes[name]))
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            step = int(reader.get_tensor("global_step"))
            saver.save(session, f"{model_dir}/model.ckpt", global_step=step + 1)
    print(json.dumps({"perturbed_variables": changed, "checkpoint": f"model.ckpt-{step + 1}"}))


def separate(config: str, wav: str, out: str, mwf: str = "") -> None:
    import numpy as np
    from spleeter.separator import Separator

    waveform = np.load(wav)
    separator = Separator(config, MWF=mwf == "mwf", multiprocess=False)
    stems = separator.separate(waveform, wav)
    np.savez(out, **{k: np.asarray(v, dtype=np.float32) for k, v in stems.items()})


def variables(model_dir: str, out: str) -> None:
    import numpy as np
    import tensorflow as tf

    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(model_dir))
    table = {}
    for name, shape in sorted(reader.get_variable_to_shape_map().items()):
        value = np.asarray(reader.get_tensor(name))
        table[name] = {
            "shape": list(shape),
            "dtype": str(value.dtype),
            "sha256": hashlib.sha256(np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<")).tobytes()).hexdigest(),
        }
    with open(out, "w") as fh:
        json.dump(table, fh, indent=1, sort_keys=True)


def fixture(out_dir: str) -> None:
    """A tiny 2-stem Spleeter checkpoint written by TensorFlow, and Spleeter's own separation of a
    short mixture with it: the unit tests' ground truth (tests/separate/fixtures)."""
    import os

    import numpy as np
    import tensorflow as tf
    from spleeter.model import EstimatorSpecBuilder
    from spleeter.separator import Separator

    tf.compat.v1.disable_eager_execution()
    from spleeter.utils.configuration import load_configuration

    config = load_configuration("spleeter:2stems")
    config["model"]["params"] = {"conv_n_filters": [4, 4, 8, 8, 8, 8]}
    model_dir = os.path.join(out_dir, "tiny-2stems")
    os.makedirs(model_dir, exist_ok=True)
    config["model_dir"] = os.path.abspath(model_dir)
    rng = np.random.default_rng(3)
    graph = tf.Graph()
    with graph.as_default():
        waveform = tf.compat.v1.placeholder(tf.float32, shape=(None, 2), name="waveform")
        builder = EstimatorSpecBuilder({"waveform": waveform}, config)
        _ = builder.outputs
        tf.compat.v1.train.get_or_create_global_step()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            for var in tf.compat.v1.global_variables():
                name = var.op.name
                shape = var.shape.as_list()
                if name.endswith("moving_mean") or name.endswith("beta") or name.endswith("bias"):
                    value = rng.normal(0, 0.2, size=shape)
                elif name.endswith("moving_variance"):
                    value = rng.uniform(0.3, 3.0, size=shape)
                elif name.endswith("gamma"):
                    value = rng.uniform(0.5, 1.5, size=shape)
                else:
                    continue
                var.load(value.astype(np.float32), session)
            tf.compat.v1.train.Saver().save(session, os.path.join(model_dir, "model.ckpt"), global_step=0)
    with open(os.path.join(out_dir, "tiny-2stems.json"), "w") as fh:
        json.dump(config, fh, indent=1)
    t = np.arange(int(44100 * 1.0)) / 44100
    mix = np.stack(
        [0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 3100 * t), 0.2 * np.sign(np.sin(2 * np.pi * 110 * t))],
        axis=1,
    ).astype(np.float32)
    stems = Separator(os.path.join(out_dir, "tiny-2stems.json"), multiprocess=False).separate(mix)
    wiener = Separator(os.path.join(out_dir, "tiny-2stems.json"), MWF=True, multiprocess=False).separate(mix)
    np.savez_compressed(
        os.path.join(out_dir, "tiny-2stems-expected.npz"),
        mix=mix,
        **{k: np.asarray(v, np.float32) for k, v in stems.items()},
        **{f"mwf_{k}": np.asarray(v, np.float32) for k, v in wiener.items()},
    )


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "perturb":
        perturb(args[0], int(args[1]))
    elif command == "separate":
        separate(*args)
    elif command == "fixture":
        fixture(*args)
    elif command == "variables":
        variables(*args)
    else:
        raise SystemExit(f"unknown command {command}")
