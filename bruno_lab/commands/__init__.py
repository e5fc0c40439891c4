"""Sub-commands of the ``bruno-lab`` CLI, one module per command group."""
