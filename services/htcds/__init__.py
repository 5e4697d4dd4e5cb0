"""HTCDS 2.0 export: a case as IOM's Human Trafficking Case Data Standard fields.

``fields`` reads the packaged field list and checks records against it, ``mapping`` turns a
case (and its log) into a record and cuts it for an agency (no I/O), ``export`` reads cases as
the auditor and writes JSON Lines, ``cli`` is ``casebridge export htcds``.
"""
