"""The experiment's design: every setting declared once, the experiment made of them, a protocol
and a run spec with their identity, and the plan of cells. Data and checks, nothing that trains;
only the plan's check that a regularizer changes something builds models (`applicability`), so
every stage above (engine, results, reporting, study, CLI) speaks it."""
