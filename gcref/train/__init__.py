"""Training with L2 and explicit GC regularization (exact gradients by hand)."""

from .fit import (FitResult, TrainingDiverged, evaluate, fit, load_history, objective_and_grad,
                  train_step)
from .gc_regularizer import gc_penalty, gc_penalty_and_grad
from .losses import log_softmax, softmax_cross_entropy
from .optim import SGD

__all__ = ["fit", "FitResult", "TrainingDiverged", "evaluate", "load_history", "objective_and_grad",
           "train_step", "gc_penalty", "gc_penalty_and_grad", "softmax_cross_entropy", "log_softmax", "SGD"]
