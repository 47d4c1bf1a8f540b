"""`dropt plugins` and `dropt config schema`: what is registered and what a config takes."""

from __future__ import annotations



def cmd_plugins(args) -> int:
    """Every registered generator, evaluator, controller and signal, with where it comes from."""
    from ...registry import KINDS, lookup, names

    for kind in KINDS:
        print(f"{kind}s:")
        for name in names(kind):
            cls = lookup(kind, name)
            signals = f"  signals {sorted(cls.signals)}" if kind == "controller" else ""
            print(f"  {name:<24} {cls.__module__}:{cls.__qualname__}{signals}")
    return 0


def cmd_config(args) -> int:
    from ...reference import reference_markdown

    print(reference_markdown(), end="")
    return 0


def add(sub) -> None:
    sub.add_parser("plugins", help="list every registered generator, evaluator, controller and signal")
    p = sub.add_parser("config", help="the config's reference: every key with its type, default and meaning")
    p.add_argument("what", choices=("schema",), help="schema: print the reference page (Markdown)")


COMMANDS = {"plugins": cmd_plugins, "config": cmd_config}
