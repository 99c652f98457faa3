"""The book: the tables and figures its chapters call (:mod:`~pskinlib.report.tables`,
:mod:`~pskinlib.report.plots`) and the build that runs them with papermill and renders them with Jupyter Book
(:mod:`~pskinlib.report.build`). Chapters only call and plot; the logic lives here and below."""
