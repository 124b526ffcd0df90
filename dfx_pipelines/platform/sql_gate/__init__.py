"""The one SQL gate of every warehouse connector (BigQuery, PostgreSQL; Snowflake next): the parse, table,
column, aggregate and row-bound rules that do not depend on the source (`check`), built on the column-read
resolution (`column_reads`). Pure: sqlglot only. Each connector keeps only its estimate step and budget unit."""
