"""The single definition of every payload that crosses a process boundary (SPEC §4).

Services import these models; they never redefine them.
"""
