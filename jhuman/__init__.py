"""jhuman: human-centric vision models in JAX/Flax.

Importing the package is cheap (no jax, no tensorflow): submodules pull in what they need.
"""

__version__ = "0.1.0"
