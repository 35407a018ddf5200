"""The models: imported by the revision files, never by env.py."""
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from patternapp.base import Base


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(120), nullable=False, unique=True)


class Invoice(Base):
    __tablename__ = "invoices"
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id"), nullable=False, index=True)
    total: Mapped[int] = mapped_column(sa.Integer, nullable=False)
