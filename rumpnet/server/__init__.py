"""rump_server and the remote system call protocol (NetBSD's rump_server(1), rump_sp(7)),
and etfs (rump_etfs(3)). Importing this package loads nothing heavy."""
