"""Receipt printers: the ESC/POS driver (escpos.py), receipt templates (receipts.py), layout (layout.py)."""
