"""Search: filters, the strategy planner, statements and the searcher."""
