"""Watch fit() at work (chapter "What fit() does").

``InstrumentedModel`` records when ``fit()`` traces and calls its steps and resets
its metrics; ``EventRecorder`` records the callback hooks into the same list, so
one ``fit()`` call leaves a complete, ordered log of what happened.
``fit_throughput`` times fit() in steps per second.
"""


import keras
import matplotlib.pyplot as plt
import tensorflow as tf

from fitbook.batches import describe_batch, unpack_x
from fitbook.checks import positive_int
from fitbook.models import classifier
from fitbook.timing import epoch_steps, fit_run, time_run

# Rows of the timeline figure, top to bottom, in the order fit() first meets them.
EVENT_ROWS = (
    "on_train_begin",
    "reset_metrics",
    "on_epoch_begin",
    "trace train_step",
    "on_train_batch_begin",
    "train_step",
    "on_train_batch_end",
    "on_test_begin",
    "trace test_step",
    "on_test_batch_begin",
    "test_step",
    "on_test_batch_end",
    "on_test_end",
    "on_epoch_end",
    "on_train_end",
)


class InstrumentedModel(keras.Model):
    """Logs its steps and metric resets to ``self.events`` (chapter "What fit() does").

    Each event is ``(source, name, detail)``. The Python body of a step runs only
    while ``tf.function`` traces it, so a ``"trace ..."`` event is logged then; the
    ``tf.py_function`` inside the graph logs every actual call, with its batch size.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.events = []

    def record(self, name, detail=""):
        """Append ``("model", name, detail)`` to ``self.events``."""
        self.events.append(("model", name, detail))

    def record_call(self, name, data):
        """Log a trace of step ``name`` now and, from the graph, every call."""
        self.record(f"trace {name}", describe_batch(data))  # Python: tracing only
        x = unpack_x(data)
        batch_size = tf.shape(tf.nest.flatten(x)[0])[0]
        tf.py_function(lambda n: self.record(name, int(n)), [batch_size], [])

    def reset_metrics(self):
        self.record("reset_metrics")
        super().reset_metrics()

    def train_step(self, data):
        self.record_call("train_step", data)
        return super().train_step(data)

    def test_step(self, data):
        self.record_call("test_step", data)
        return super().test_step(data)


class EventRecorder(keras.callbacks.Callback):
    """Logs every training and test hook to a list (chapter "What fit() does").

    Pass the model's ``events`` list to log both into one timeline.
    """

    def __init__(self, events):
        super().__init__()
        self.events = events

    def record(self, name, detail=""):
        """Append ``("callback", name, detail)`` to the shared list of events."""
        self.events.append(("callback", name, detail))

    def on_train_begin(self, logs=None):
        self.record("on_train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.record("on_epoch_begin", epoch)

    def on_train_batch_begin(self, batch, logs=None):
        self.record("on_train_batch_begin", batch)

    def on_train_batch_end(self, batch, logs=None):
        self.record("on_train_batch_end", batch)

    def on_test_begin(self, logs=None):
        self.record("on_test_begin")

    def on_test_batch_begin(self, batch, logs=None):
        self.record("on_test_batch_begin", batch)

    def on_test_batch_end(self, batch, logs=None):
        self.record("on_test_batch_end", batch)

    def on_test_end(self, logs=None):
        self.record("on_test_end", ", ".join(sorted(logs or {})))

    def on_epoch_end(self, epoch, logs=None):
        self.record("on_epoch_end", ", ".join(sorted(logs or {})))

    def on_train_end(self, logs=None):
        self.record("on_train_end")


def record_fit(x, y=None, steps_per_execution=1, **fit_options):
    """Fit an ``InstrumentedModel``; return its events and History (chapter "What
    fit() does").

    ``fit_options`` go to ``fit()`` unchanged (``batch_size``, ``epochs``,
    ``validation_data``, ``sample_weight``, ...); progress output is off.
    """
    model = classifier(InstrumentedModel, seed=0, probabilities=True)
    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
        jit_compile=False,  # tf.py_function cannot be compiled by XLA
    )
    callbacks = [EventRecorder(model.events)]
    history = model.fit(x, y, callbacks=callbacks, verbose=0, **fit_options)
    return list(model.events), history


def train_traces(x, y, metrics=(), build_optimizer=False, batch_size=40):
    """How many times one epoch of ``fit()`` traces ``train_step`` (chapter "What
    fit() does").

    The model and compile() are ``record_fit``'s, except that only the compiled
    ``metrics`` and whether the optimizer's variables are created before
    ``fit()`` (``build_optimizer``) change, so each control changes one thing.
    """
    model = classifier(InstrumentedModel, seed=0, probabilities=True)
    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=list(metrics),
        jit_compile=False,  # tf.py_function cannot be compiled by XLA
    )
    if build_optimizer:
        model.optimizer.build(model.trainable_variables)
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
    return count_events(model.events, "trace train_step")


def count_events(events, name):
    """How many events are called ``name`` (chapter "What fit() does")."""
    return sum(1 for _, event, _ in events if event == name)


def plot_timeline(events, title="What fit() does, in order"):
    """Draw events as a timeline, one row per kind (chapter "What fit() does")."""
    unknown = sorted({name for _, name, _ in events} - set(EVENT_ROWS))
    if not events or unknown:
        raise ValueError(
            f"events must be a non-empty list of (source, name, detail) with names "
            f"from EVENT_ROWS; got {len(events)} events, unknown names {unknown}."
        )
    fig, ax = plt.subplots(figsize=(9, 4.8))
    rows = [EVENT_ROWS.index(name) for _, name, _ in events]
    ax.plot(range(len(events)), rows, color="0.8", linewidth=0.8, zorder=0)
    colors = {"callback": "tab:blue", "model": "tab:orange"}
    for source, color in colors.items():
        order = [i for i, event in enumerate(events) if event[0] == source]
        rows = [EVENT_ROWS.index(events[i][1]) for i in order]
        ax.scatter(order, rows, s=18, color=color, label=f"{source} event")
    ax.set_yticks(range(len(EVENT_ROWS)), EVENT_ROWS, fontsize=8)
    ax.invert_yaxis()  # first events at the top
    ax.set_xlabel("order of events during one fit() call")
    ax.set_ylabel("event")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def fit_throughput(model, x, y, batch_size, repeats=3):
    """Best training steps per second of ``repeats`` one-epoch fit() calls.

    The model must be compiled; ``time_runs`` first trains one untimed epoch
    (tracing, warm-up), then keeps the fastest of the timed ones (chapter "What
    fit() does", and ``benchmarks/train_step_vs_fit.py``).
    """
    if not model.compiled:
        raise ValueError("fit_throughput needs a compiled model; call compile() first.")
    positive_int("repeats", repeats)
    run = fit_run(model, x, y, batch_size)
    steps = epoch_steps(len(x), batch_size)
    return time_run("fit", run, steps, repeats).steps_per_second
