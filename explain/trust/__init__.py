"""Can a map be trusted: sanity checks (parameter randomisation) and localisation against a mask.

May import: everything below it (io, models, cam, policy, request). Never cohort, report or the CLI.
"""
