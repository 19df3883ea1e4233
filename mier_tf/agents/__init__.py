"""Context-augmented TF-Agents SAC."""
from mier_tf.agents.sac import (ContextSacLearner, SacLosses, augmented_time_step_spec,
                                create_sac_agent, make_transition, tag_with_context)
