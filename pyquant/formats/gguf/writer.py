from .reader import GGUFField as _F  # placeholder
class GGUFWriter: pass
