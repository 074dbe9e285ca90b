"""Hardware-in-the-loop testing of a user's model: the pytest plugin (:mod:`.plugin`), the device under
test (:mod:`.dut`), its typed results and the session's metrics (:mod:`.results`), and the run's
artifacts (:mod:`.artifacts`). It asks :mod:`pipeline.board` for every board, real or emulated."""
