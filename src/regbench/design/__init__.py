"""The experiment's design: every setting declared once, the experiment made of them, a protocol
and a run spec with their identity, and the plan of cells. Pure data and checks; nothing here
trains or loads a backend, so every stage above (engine, results, reporting, study, CLI) speaks
it."""
