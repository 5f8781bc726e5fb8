"""TrainTestExporter in multi-process training: rank 0 pushes alone, or every process into its own group.

Real processes against a real Pushgateway: two processes launched as torchrun
would (``RANK``/``WORLD_SIZE``), and two processes of a real multi-host Keras 3
run on JAX (``keras.distribution.initialize`` + ``DataParallel``, on CPU).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from gangplank_devtools import read_gateway, value

from gangplank.process_rank import ProcessRank, current_process
from tests.gateway_tools import ROOT

pytestmark = pytest.mark.slow  # trains in real torchrun and JAX multi-process runs

# argv: gateway address, "every" or "rank0", epochs. Each process trains its own copy (as torchrun launches them).
TORCHRUN_WORKER = """
import sys
import keras
import numpy as np
import gangplank

address, every, epochs = sys.argv[1], sys.argv[2] == "every", int(sys.argv[3])
keras.utils.set_random_seed(0)
x = np.random.default_rng(0).random((64, 4), dtype=np.float32)
y = (x[:, 0] * 3).astype("int32")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
exporter = gangplank.TrainTestExporter(address, "ddp", every_process=every)
model.fit(x, y, epochs=epochs, batch_size=16, verbose=0, callbacks=[exporter])
assert exporter.close(30)
print(exporter.process.rank, exporter.exports)
"""

# argv: gateway address, "every" or "rank0", coordinator address, process id. One data-parallel model over both.
JAX_WORKER = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
import keras
import numpy as np
import tensorflow as tf
import gangplank

address, every, coordinator, process_id = sys.argv[1], sys.argv[2] == "every", sys.argv[3], int(sys.argv[4])
keras.distribution.initialize(coordinator, 2, process_id)
keras.distribution.set_distribution(keras.distribution.DataParallel())
keras.utils.set_random_seed(0)
x = np.random.default_rng(0).random((64, 4), dtype=np.float32)
y = (x[:, 0] * 3).astype("int32")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
exporter = gangplank.TrainTestExporter(address, "jax-dp", every_process=every)
history = model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), epochs=2, verbose=0, callbacks=[exporter])
assert exporter.close(30)
print(exporter.process.rank, exporter.exports, history.history["loss"][-1])
"""


def start(script: str, *args: str, **environment: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "KERAS_BACKEND")}
    env.update(PYTHONPATH=str(ROOT / "src"), TF_CPP_MIN_LOG_LEVEL="2", **environment)
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def finish(process: subprocess.Popen) -> str:
    try:
        out, err = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    assert process.returncode == 0, err[-3000:]
    return out.strip()


def groups(pushgateway) -> dict[str, dict[str, str]]:
    """The gateway's groups, by instance label: {instance: labels}."""
    return {dict(labels)["instance"]: dict(labels) for _, labels in read_gateway(pushgateway.url, "push_time_seconds")}


def free_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def test_torchrun_default_only_rank_0_pushes(pushgateway):
    # Rank 1 runs after rank 0 and trains 3 epochs, not 2: had it pushed, the group would say 3.
    assert finish(start(TORCHRUN_WORKER, pushgateway.address, "rank0", "2", RANK="0", WORLD_SIZE="2")) == "0 True"
    assert finish(start(TORCHRUN_WORKER, pushgateway.address, "rank0", "3", RANK="1", WORLD_SIZE="2")) == "1 False"
    samples = read_gateway(pushgateway.url)
    assert set(groups(pushgateway)) == {""}
    assert value(samples, "gangplank_train_epochs_count", job="ddp") == 2
    assert value(samples, "gangplank_train_running", job="ddp") == 0


def test_torchrun_every_process_pushes_its_own_instance(pushgateway):
    workers = [
        start(TORCHRUN_WORKER, pushgateway.address, "every", str(2 + rank), RANK=str(rank), WORLD_SIZE="2")
        for rank in (0, 1)
    ]
    assert [finish(worker) for worker in workers] == ["0 True", "1 True"]
    assert set(groups(pushgateway)) == {"rank-0", "rank-1"}
    samples = read_gateway(pushgateway.url)
    assert value(samples, "gangplank_train_epochs_count", instance="rank-0") == 2
    assert value(samples, "gangplank_train_epochs_count", instance="rank-1") == 3


@pytest.mark.parametrize("mode", ["rank0", "every"])
def test_multi_host_keras_on_jax(pushgateway, mode):
    coordinator = free_address()
    workers = [start(JAX_WORKER, pushgateway.address, mode, coordinator, str(rank)) for rank in (0, 1)]
    outputs = [finish(worker).splitlines()[-1].split() for worker in workers]
    assert [output[:2] for output in outputs] == [["0", "True"], ["1", str(mode == "every")]]
    assert outputs[0][2] == outputs[1][2]  # one data-parallel model: both processes saw the same loss
    assert set(groups(pushgateway)) == ({"rank-0", "rank-1"} if mode == "every" else {""})
    loss = float(outputs[0][2])
    for instance in groups(pushgateway):
        assert value(read_gateway(pushgateway.url), "gangplank_train_loss", instance=instance) == pytest.approx(loss)


def test_an_instance_given_by_the_user_is_kept(pushgateway):
    script = TORCHRUN_WORKER.replace("every_process=every)", "every_process=every, grouping_key={'instance': 'w1'})")
    assert finish(start(script, pushgateway.address, "every", "1", RANK="1", WORLD_SIZE="2")) == "1 True"
    assert set(groups(pushgateway)) == {"w1"}


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, None),
        ({"WORLD_SIZE": "1", "RANK": "0"}, None),
        ({"WORLD_SIZE": "4", "RANK": "3"}, ProcessRank(3, 4)),
    ],
)
def test_current_process_reads_torchrun_variables(environment, expected):
    assert current_process(environment) == expected


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"WORLD_SIZE": "2"}, "RANK is not set"),
        ({"WORLD_SIZE": "two", "RANK": "0"}, "WORLD_SIZE must be an integer, got 'two'"),
        ({"WORLD_SIZE": "2", "RANK": "2"}, r"RANK must be in \[0, WORLD_SIZE=2\), got 2"),
    ],
)
def test_current_process_rejects_inconsistent_variables(environment, message):
    with pytest.raises(ValueError, match=message):
        current_process(environment)
