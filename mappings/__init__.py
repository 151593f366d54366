"""Pure translations between wire formats and hub records: no database, web or socket code."""
