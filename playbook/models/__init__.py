"""Flax linen modules, used only through init/apply."""
