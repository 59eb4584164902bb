"""playbook: classic deep-learning studies as pure-function JAX/Flax code."""
