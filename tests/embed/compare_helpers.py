"""A forward-pass counter for the compare tests."""


class ForwardCounter:
    """Counts the forward passes of ``model`` (a forward pre-hook)."""

    def __init__(self, model):
        self.calls = 0
        model.register_forward_pre_hook(self)

    def __call__(self, module, args):
        self.calls += 1
