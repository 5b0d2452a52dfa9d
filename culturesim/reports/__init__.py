"""Reports: Markdown/HTML reports, figures, power, the coordination analysis section and the study
explorer.
"""
