from trace_cli.main import app

app(prog_name="trace")
