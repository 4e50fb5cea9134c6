"""Runs inside the isolated musicnn reference venv (TensorFlow 2.12, musicnn 0.1.0); never imported by stylecraft.

Tasks (``python musicnn_worker.py TASK JSON``, answer as JSON on the last stdout line):

* ``extract``: ``musicnn.extractor.extractor`` on each file (3 s patches, no overlap), saving its
  input patches (``batch_data``), taggram and penultimate features to an ``.npz``;
* ``network``: the same TensorFlow graph and checkpoint run on given patches (the network alone).
"""

from __future__ import annotations

import json
import sys

import numpy as np


def _graph(model: str, n_frames: int):  # type: ignore[no-untyped-def]
    import tensorflow as tf
    from musicnn import configuration as config
    from musicnn import models

    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.reset_default_graph()
    labels = config.MTT_LABELS if "MTT" in model else config.MSD_LABELS
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, n_frames, config.N_MELS])
        is_training = tf.compat.v1.placeholder(tf.bool)
        out = models.define_model(x, is_training, model, len(labels))
        y, penultimate = out[0], out[-1]
    sess = tf.compat.v1.Session()
    sess.run(tf.compat.v1.global_variables_initializer())
    import os

    import musicnn

    saver = tf.compat.v1.train.Saver()
    saver.restore(sess, os.path.join(os.path.dirname(musicnn.__file__), model) + "/")
    return sess, x, is_training, tf.nn.sigmoid(y), penultimate


def extract(args: dict) -> dict:
    from musicnn import extractor

    out = {}
    for i, f in enumerate(args["files"]):
        taggram, _, feats = extractor.extractor(f, model=args["model"], input_length=3, extract_features=True)
        batch, _ = extractor.batch_data(f, 187, 187)
        out[f"taggram{i}"] = taggram
        out[f"penultimate{i}"] = feats["penultimate"]
        out[f"patches{i}"] = batch.astype(np.float32)
    np.savez(args["out"], **out)
    return {"ok": True, "files": len(args["files"])}


def network(args: dict) -> dict:
    patches = np.load(args["patches"])
    sess, x, is_training, prob, pen = _graph(args["model"], patches.shape[1])
    p, e = sess.run([prob, pen], feed_dict={x: patches, is_training: False})
    np.savez(args["out"], taggram=p, penultimate=e)
    return {"ok": True, "patches": int(patches.shape[0])}


if __name__ == "__main__":
    task, payload = sys.argv[1], json.loads(sys.argv[2])
    result = {"extract": extract, "network": network}[task](payload)
    print(json.dumps(result))
