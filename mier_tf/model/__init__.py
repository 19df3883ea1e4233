"""The context-conditioned dynamics and reward model and its meta-learning (model identification)."""
from mier_tf.model.adaptation import (InnerLoop, MetaTrainer, MetaTrainInfo, adapt_context,
                                      continue_adaptation, meta_loss)
from mier_tf.model.dynamics import ContextualDynamicsModel, clone_model

__all__ = [
    "ContextualDynamicsModel", "clone_model", "InnerLoop", "adapt_context", "meta_loss",
    "MetaTrainer",
    "MetaTrainInfo", "continue_adaptation",
]
