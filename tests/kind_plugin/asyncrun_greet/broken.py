"""A plug-in module that cannot be imported."""

raise ImportError("asyncrun_greet.broken needs a module that is not installed")
