"""An example plug-in package for dropt: one generator, evaluator, controller and signal."""
