"""Context-augmented TF-Agents SAC."""
from mier_tf.agents.sac import (ContextSacLearner, NumpyActor, SacLosses, augmented_time_step_spec,
                                create_sac_agent, make_transition, policy_action_fn,
                                tag_with_context)
