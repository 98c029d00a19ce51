"""What a sweep shows: console report, top-trials table, trials table, plots. Uses the
engine (sweep/engine/), never the commands."""
